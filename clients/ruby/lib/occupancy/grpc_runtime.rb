# frozen_string_literal: true

require "occupancy/error"

module Occupancy
  # Everything that touches the grpc gem's process-wide state: loading it
  # lazily, knowing in which process it was first used, and making forks safe.
  #
  # grpc keeps native threads and state per process, and a forked child only
  # inherits the thread that called +fork+. What that means depends on the
  # grpc version (measured with Debian's grpc 1.51 and read from grpc's
  # source for 1.57+):
  #
  # * Loading the gem is harmless, and a child can use gRPC freely as long as
  #   no ancestor process ever used it. This library therefore loads grpc and
  #   opens its channel only on a client's first call, never at construction.
  # * grpc < 1.57: once a process has used gRPC, no child of it can; grpc
  #   raises "grpc cannot be used before and after forking". The child gets
  #   one {ForkError} naming the cause and the fix instead.
  # * grpc >= 1.57 with +GRPC_ENABLE_FORK_SUPPORT=1+ (set by this library when
  #   it is the first to load grpc and the variable is unset): a
  #   +Process._fork+ hook (Ruby >= 3.1) calls +GRPC.prefork+ before every
  #   fork and +GRPC.postfork_parent+ / +GRPC.postfork_child+ after it, so the
  #   parent keeps working and every child can use gRPC. Cached-mode watchers
  #   (threads inside a streaming call, which grpc refuses to fork over) are
  #   stopped before the fork and restarted after it.
  module GrpcRuntime
    # The first grpc release with GRPC.prefork / GRPC.postfork_*.
    FORK_SUPPORT_SINCE = Gem::Version.new("1.57")

    # Raised by grpc in a child when gRPC was used before the fork; matched to
    # turn it into a {ForkError} (also when another library used grpc first).
    GRPC_FORK_MESSAGE = /before and after forking|GRPC\.prefork must be called|between calls to GRPC\.prefork/

    # The fork bookkeeping, separate from the grpc gem so that its logic is
    # unit-tested with a stand-in for +GRPC+ (the grpc on the test machine is
    # older than 1.57).
    class ForkState
      # @return [Integer, nil] the pid of the process in which gRPC was first
      #   used by this library, or into which it was carried over by a
      #   successful +GRPC.postfork_child+: gRPC is usable only there.
      attr_reader :usable_in

      # @param grpc [Module] +::GRPC+, or a stand-in with +prefork+,
      #   +postfork_parent+ and +postfork_child+
      # @param version [String] the grpc gem's version
      # @param pid [#call] the current pid (Process.pid)
      def initialize(grpc:, version:, pid: -> { Process.pid })
        @grpc = grpc
        @version = version.to_s
        @pid = pid
        @usable_in = nil
        @prefork_failure = nil
        @watchers = []
        @mutex = Mutex.new
      end

      # @return [Boolean] whether this grpc has GRPC.prefork and friends.
      def fork_support?
        GrpcRuntime.fork_support?(@version)
      end

      # Records that gRPC is about to be used in this process.
      #
      # @raise [ForkError] when gRPC was used in an ancestor process and
      #   cannot be used here.
      def use!
        current = @pid.call
        @usable_in ||= current
        raise ForkError, fork_error_message(@usable_in, current) unless @usable_in == current
      end

      # @return [Boolean] whether gRPC was used by this library in an
      #   ancestor and cannot be used in this process.
      def unusable_here?
        !@usable_in.nil? && @usable_in != @pid.call
      end

      # The {ForkError} message for a child +current+ of a process +parent+
      # that used gRPC: the cause, and the fix.
      def fork_error_message(parent, current)
        cause =
          if !fork_support?
            "grpc #{@version} cannot be used after fork once the parent used it (fork support needs grpc >= 1.57)"
          elsif @prefork_failure
            "grpc #{@version} could not prepare the fork: GRPC.prefork failed with #{@prefork_failure.inspect}"
          else
            "grpc #{@version} was not told about the fork (GRPC.prefork is called only on Ruby >= 3.1, " \
              "from the Process._fork hook this library installs)"
          end
        origin = parent ? "pid #{parent}" : "a process"
        "occupancy: this process (pid #{current}) was forked from #{origin}, which had already " \
          "made gRPC calls, and #{cause}. Fix: do not call the gate in the parent before forking " \
          "(in a Rails initializer or a preloading server's master, only construct the client: it " \
          "connects on first use, in each worker), or upgrade grpc to >= 1.57, with which this library " \
          "makes forking after a call safe (see \"Fork safety\" in the occupancy-client README)."
      end

      # Registers a cached-mode watcher of this process, to be paused around
      # forks.
      def register(watcher)
        @mutex.synchronize { @watchers << watcher unless @watchers.include?(watcher) }
      end

      def unregister(watcher)
        @mutex.synchronize { @watchers.delete(watcher) }
      end

      # Called right before fork (by the Process._fork hook). Does nothing
      # unless this grpc supports forking and this library used gRPC in this
      # process.
      #
      # @return [Hash, nil] what {#after_fork} needs
      def before_fork
        return nil unless fork_support? && @usable_in == @pid.call

        paused = @mutex.synchronize { @watchers.dup }
        paused.each(&:pause)
        begin
          @grpc.prefork
          @prefork_failure = nil
          { paused: paused, prefork: true }
        rescue StandardError => e
          @prefork_failure = "#{e.class}: #{e.message}"
          { paused: paused, prefork: false }
        end
      end

      # Called right after fork, in the parent (+child: false+, also when fork
      # itself failed) and in the child.
      def after_fork(state, child:)
        return if state.nil?

        if child
          @mutex.synchronize { @watchers.clear }
          if state[:prefork]
            @grpc.postfork_child
            @usable_in = @pid.call
          end
        else
          @grpc.postfork_parent if state[:prefork]
          state[:paused].each(&:resume)
        end
      end
    end

    # Prepended to Process's singleton class (Ruby >= 3.1 routes Kernel#fork,
    # Process.fork and IO.popen("-") through Process._fork).
    module ProcessForkHook
      def _fork
        state = GrpcRuntime.fork_state&.before_fork
        begin
          pid = super
        rescue Exception # rubocop:disable Lint/RescueException -- re-raised
          GrpcRuntime.fork_state&.after_fork(state, child: false)
          raise
        end
        GrpcRuntime.fork_state&.after_fork(state, child: pid.zero?)
        pid
      end
    end

    @load_mutex = Mutex.new
    @fork_state = nil

    class << self
      # @return [ForkState, nil] set once grpc is loaded
      attr_reader :fork_state

      # @param version [String] a grpc gem version
      # @return [Boolean] whether that grpc has GRPC.prefork and friends
      def fork_support?(version)
        Gem::Version.new(version).release >= FORK_SUPPORT_SINCE
      end

      # The grpc gem's version, read without loading grpc's native code.
      def grpc_version
        require "grpc/version"
        ::GRPC::VERSION
      end

      # Loads grpc and the generated stubs (once). With grpc >= 1.57 it first
      # sets GRPC_ENABLE_FORK_SUPPORT=1 unless the variable is set (grpc reads
      # it when first used), and installs the Process._fork hook.
      #
      # @return [ForkState]
      def load!
        return @fork_state if @fork_state

        @load_mutex.synchronize do
          return @fork_state if @fork_state

          version = grpc_version
          supported = fork_support?(version)
          ENV["GRPC_ENABLE_FORK_SUPPORT"] ||= "1" if supported && !defined?(::GRPC::Core)
          require "grpc"
          require "occupancy/v1/occupancy_services_pb"
          install_fork_hook if supported
          @fork_state = ForkState.new(grpc: ::GRPC, version: version)
        end
      end

      # Whether the Process._fork hook is installed (only with grpc >= 1.57,
      # on Ruby >= 3.1).
      def fork_hook_installed?
        Process.singleton_class.ancestors.include?(ProcessForkHook)
      end

      # @return [Boolean] whether +error+ is grpc's refusal to run after fork.
      def fork_refusal?(error)
        error.is_a?(RuntimeError) && GRPC_FORK_MESSAGE.match?(error.message)
      end

      private

      def install_fork_hook
        return unless Process.respond_to?(:_fork)
        return if fork_hook_installed?

        Process.singleton_class.prepend(ProcessForkHook)
      end
    end
  end
end
