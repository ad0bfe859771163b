# frozen_string_literal: true

require "logger"
require "occupancy/codes"
require "occupancy/error"
require "occupancy/names"
require "occupancy/version"
require "occupancy/error_hook"
require "occupancy/grpc_runtime"
require "occupancy/watcher"

module Occupancy
  # What one {Client#publish_if_occupied} did, so the caller can tell which
  # channels really got the event.
  #
  # @!attribute [r] published
  #   @return [Array<String>] channels the event was triggered on (occupied
  #     ones), each once, in request order.
  # @!attribute [r] skipped
  #   @return [Array<String>] channels that were vacant and got nothing, each
  #     once, in request order.
  # @!attribute [r] deferred
  #   @return [Array<String>] occupied channels whose update the gate holds to
  #     coalesce it (empty unless the gate coalesces).
  # @!attribute [r] superseded
  #   @return [Integer] how many held updates of earlier calls this call
  #     replaced (0 unless the gate coalesces).
  # @!attribute [r] store_unavailable
  #   @return [Boolean] true when the gate could not ask its store and,
  #     configured to publish when the store is down, published to every
  #     requested channel.
  PublishResult = Struct.new(:published, :skipped, :deferred, :superseded, :store_unavailable,
                             keyword_init: true) do
    def initialize(published: [], skipped: [], deferred: [], superseded: 0, store_unavailable: false)
      super
    end
  end

  # A connection to the occupancy gate, the service that knows which Pusher
  # channels have subscribers, so an encoder can skip publishing progress
  # nobody is watching. The behaviour is the one of every occupancy client,
  # described in clients/CONTRACT.md.
  #
  # Constructing a client touches neither the network nor the grpc gem: grpc
  # is loaded and one gRPC channel is opened on the first call, and reused by
  # every call after it. In a forked child (pid changed) the channel is
  # opened again; see "Fork safety" in the README. A client is thread-safe:
  # create one per process and share it.
  #
  # Failure policy of {#occupied?}: with +fail_open: true+ (the default) an
  # outage (+UNAVAILABLE+, +DEADLINE_EXCEEDED+, +RESOURCE_EXHAUSTED+, or a
  # transport error) answers +true+ and the error goes to the +on_error+
  # hook; every other failure raises. With +fail_open: false+ every failure
  # raises. {#publish_if_occupied} always raises: nothing was published.
  #
  # @example
  #   gate = Occupancy::Client.new("occupancy:50051")
  #   if gate.occupied?("job-42")
  #     gate.publish_if_occupied(["job-42"], "progress", '{"pct":40}').published # => ["job-42"]
  #   end
  #   gate.close
  class Client
    # Seconds allowed for {#occupied?}: short, because it sits in front of
    # every progress update.
    DEFAULT_CHECK_TIMEOUT = 1.0
    # Seconds allowed for {#publish_if_occupied}: longer than the gate's own
    # 3 s Pusher timeout, so the gate reports Pusher's failure first.
    DEFAULT_PUBLISH_TIMEOUT = 5.0
    # gRPC's reconnect backoff is capped at this (gRPC's own cap is 120 s), so
    # a client is back on a restarted gate within seconds.
    MAX_RECONNECT_BACKOFF_MS = 2000
    # The environment variable read when no target is given (the same name in
    # every client).
    ADDRESS_ENV = "OCCUPANCY_ADDR"
    # @deprecated Renamed {ADDRESS_ENV}; this alias will go.
    TARGET_ENV = ADDRESS_ENV
    # Metadata keys that gRPC accepts.
    METADATA_KEY = /\A[0-9a-z_.\-]+\z/

    # @return [String] the gate's address
    attr_reader :target
    # @return [Float] seconds allowed for {#occupied?}
    attr_reader :check_timeout
    # @return [Float] seconds allowed for {#publish_if_occupied}
    attr_reader :publish_timeout
    # @return [Boolean] the failure policy of {#occupied?}
    attr_reader :fail_open
    # @return [String] the Pusher app asked about ("" = the gate's only app)
    attr_reader :app_id
    # @return [Hash{String=>String}] the channel arguments the gRPC channel is
    #   opened with (reconnect backoff, keepalive, user agent, +channel_args+)
    attr_reader :channel_args

    # @param target [String, nil] the gate's address, +host:port+ (any gRPC
    #   target string); +nil+ reads +OCCUPANCY_ADDR+.
    # @param token [String, nil] sent as +authorization: Bearer <token>+ on
    #   every call.
    # @param tls [Boolean] TLS to the gate, trusting the system's CAs.
    # @param ca_file [String, nil] a PEM CA bundle to trust instead (implies
    #   TLS); read now, so a wrong path fails at construction.
    # @param metadata [Hash{String=>String}] extra metadata sent on every call.
    # @param keepalive [Numeric, nil] seconds between HTTP/2 keepalive pings
    #   (off when nil).
    # @param app_id [String] the Pusher app asked about, when the gate serves
    #   several ("" = the only one).
    # @param check_timeout [Numeric] seconds allowed for {#occupied?}.
    # @param publish_timeout [Numeric] seconds allowed for {#publish_if_occupied}.
    # @param fail_open [Boolean] whether {#occupied?} answers +true+ on an
    #   outage (see the class docs).
    # @param on_error [#call, nil] called with every error fail-open swallows;
    #   nil logs a warning at most once per 30 s ({RateLimitedWarning}). An
    #   exception raised by the hook is logged and ignored.
    # @param logger [Logger, nil] where the default hook and the client's own
    #   warnings go (default: a Logger on $stderr).
    # @param cached [Boolean] answer {#occupied?} from a local copy kept by the
    #   WatchOccupancy stream (see the README).
    # @param channel_args [Hash] extra gRPC channel arguments; they override
    #   the defaults above.
    # @raise [ArgumentError] for an invalid option or no target.
    def initialize(target = nil, token: nil, tls: false, ca_file: nil, metadata: {}, keepalive: nil,
                   app_id: "", check_timeout: DEFAULT_CHECK_TIMEOUT, publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
                   fail_open: true, on_error: nil, logger: nil, cached: false, channel_args: {})
      @target = resolve_target(target)
      @check_timeout = seconds(:check_timeout, check_timeout)
      @publish_timeout = seconds(:publish_timeout, publish_timeout)
      raise ArgumentError, "fail_open must be true or false, got #{fail_open.inspect}" unless [true, false].include?(fail_open)
      raise ArgumentError, "cached must be true or false, got #{cached.inspect}" unless [true, false].include?(cached)
      raise ArgumentError, "app_id must be a String, got #{app_id.class}" unless app_id.is_a?(String)

      @fail_open = fail_open
      @cached = cached
      @app_id = app_id
      @logger = logger || Logger.new($stderr)
      @on_error = hook(on_error)
      @metadata = call_metadata(token, metadata)
      @tls = tls ? true : false
      @ca_pem = read_ca(ca_file)
      @channel_args = build_channel_args(keepalive, channel_args)

      @mutex = Mutex.new
      @closed = false
      @stub = nil
      @channel = nil
      @stub_pid = nil
      @watcher = nil
      @watcher_pid = nil
    end

    # Whether anyone is subscribed to +channel+ right now, as last reported to
    # the gate by Pusher's webhooks.
    #
    # @param channel [String] a Pusher channel name (1 to 164 characters of
    #   +A-Z a-z 0-9 _ - = @ , . ;+), checked before any call.
    # @return [Boolean] also +true+ on an outage when failing open.
    # @raise [InvalidArgumentError] for a malformed name, whatever the policy
    #   and even while the gate is down.
    # @raise [ClosedError] after {#close}.
    # @raise [ForkError] in a child that cannot use gRPC (see the README).
    # @raise [Error] any other failure; an outage only with +fail_open: false+.
    def occupied?(channel)
      raise ClosedError if @closed

      Names.channel!(channel)
      return cached_occupied?(channel) if @cached

      stub # loads grpc and the generated classes
      request = ::Occupancy::V1::IsOccupiedRequest.new(channel: channel, app_id: @app_id)
      invoke(:is_occupied, request, @check_timeout).occupied
    rescue Error => e
      raise unless @fail_open && e.outage?

      report(e)
      true
    end

    # Triggers +event+ on those of +channels+ that are occupied, in a single
    # Pusher API call made by the gate, and makes no call to Pusher when none
    # is.
    #
    # @param channels [Array<String>, String] 1 to 100 channel names
    #   (duplicates count as one), checked before any call.
    # @param event [String] the Pusher event name, 1 to 200 characters.
    # @param data [String] the payload, sent verbatim (at most 10240 bytes).
    # @param socket_id [String, nil] a Pusher socket id to exclude.
    # @return [PublishResult]
    # @raise [Error] on any failure, whatever the failure policy.
    def publish_if_occupied(channels, event, data, socket_id: nil)
      raise ClosedError if @closed

      list = Names.channels!(channels)
      Names.event!(event)
      raise InvalidArgumentError, "data must be a String, got #{data.class}" unless data.is_a?(String)
      unless socket_id.nil? || socket_id.is_a?(String)
        raise InvalidArgumentError, "socket_id must be a String, got #{socket_id.class}"
      end
      stub # loads grpc and the generated classes
      request = build_request do
        ::Occupancy::V1::PublishIfOccupiedRequest.new(
          channels: list, event: event, data: data, socket_id: socket_id.to_s, app_id: @app_id
        )
      end
      response = invoke(:publish_if_occupied, request, @publish_timeout)
      PublishResult.new(
        published: response.published.to_a, skipped: response.skipped.to_a, deferred: response.deferred.to_a,
        superseded: response.superseded, store_unavailable: response.store_unavailable
      )
    end

    # Whether cached mode's local copy is current (always false without
    # +cached: true+, and before the first {#occupied?}).
    #
    # @return [Boolean]
    def synced?
      watcher = @watcher
      !watcher.nil? && @watcher_pid == Process.pid && watcher.synced?
    end

    # Cached mode: starts the subscription if needed and waits until the
    # local copy is synchronised with the gate, for at most +timeout+
    # seconds. Call it at startup so the first checks are answered from the
    # copy rather than by the failure policy. The same call in every client.
    #
    # @param timeout [Numeric] seconds to wait at most
    # @return [Boolean] true once synchronised, false when +timeout+ passed
    #   first (the subscription keeps retrying in the background)
    # @raise [Error] +FAILED_PRECONDITION+ without +cached: true+
    # @raise [ClosedError] after {#close}
    def wait_synced(timeout = 5.0)
      raise ClosedError if @closed
      raise Error.new(Codes::FAILED_PRECONDITION, "wait_synced needs a client built with cached: true") unless @cached

      timeout = seconds(:timeout, timeout)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      watcher, = current_watcher
      loop do
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        # The watcher's own wait returns early after a failed attempt; keep
        # waiting through its retries until the deadline.
        return true if watcher.wait_synced([left, 0].max)
        raise ClosedError if @closed
        return false if left <= 0

        sleep([left, 0.05].min)
      end
    end

    # Ends cached mode's subscription and shuts the gRPC channel down. Every
    # call afterwards raises {ClosedError}. Safe to call more than once.
    #
    # @return [void]
    def close
      watcher, channel = @mutex.synchronize do
        return if @closed

        @closed = true
        here = Process.pid
        # Objects inherited from the parent belong to its gRPC runtime: drop
        # them in a child, never touch them.
        [(@watcher if @watcher_pid == here), (@channel if @stub_pid == here)]
      end
      if watcher
        watcher.stop
        GrpcRuntime.fork_state&.unregister(watcher)
      end
      begin
        channel&.close
      rescue StandardError
        nil
      end
      nil
    end

    # @return [Boolean] whether {#close} was called.
    def closed?
      @closed
    end

    private

    def resolve_target(target)
      target = ENV.fetch(ADDRESS_ENV, nil) if target.nil?
      return target if target.is_a?(String) && !target.empty?

      raise ArgumentError,
            "no gate address: pass a target (\"host:port\") or set #{ADDRESS_ENV}, got #{target.inspect}"
    end

    def seconds(name, value)
      unless value.is_a?(Numeric) && value.to_f.finite? && value.positive?
        raise ArgumentError, "#{name} must be a positive number of seconds, got #{value.inspect}"
      end

      value.to_f
    end

    def hook(on_error)
      if on_error.is_a?(Symbol)
        raise ArgumentError, "on_error is the hook that sees swallowed errors (a callable); choose the " \
                             "failure policy with fail_open: true or false"
      end
      raise ArgumentError, "on_error must respond to #call" unless on_error.nil? || on_error.respond_to?(:call)

      on_error || RateLimitedWarning.new(logger: @logger)
    end

    def call_metadata(token, metadata)
      raise ArgumentError, "metadata must be a Hash" unless metadata.is_a?(Hash)

      result = {}
      metadata.each do |key, value|
        key = key.to_s
        unless key.match?(METADATA_KEY) && !key.start_with?("grpc-")
          raise ArgumentError, "metadata key #{key.inspect} must be lower-case [0-9a-z_.-] and not start with grpc-"
        end
        raise ArgumentError, "metadata value for #{key} must be a String" unless value.is_a?(String)

        result[key] = value
      end
      unless token.nil?
        raise ArgumentError, "token must be a non-empty String" unless token.is_a?(String) && !token.empty?

        result["authorization"] = "Bearer #{token}"
      end
      result.freeze
    end

    def read_ca(ca_file)
      return nil if ca_file.nil?

      File.read(ca_file)
    rescue SystemCallError, IOError => e
      raise ArgumentError, "ca_file #{ca_file.inspect} cannot be read: #{e.message}"
    end

    def build_channel_args(keepalive, extra)
      raise ArgumentError, "channel_args must be a Hash" unless extra.is_a?(Hash)

      args = {
        "grpc.max_reconnect_backoff_ms" => MAX_RECONNECT_BACKOFF_MS,
        "grpc.primary_user_agent" => "occupancy-ruby/#{VERSION}"
      }
      unless keepalive.nil?
        interval_ms = (seconds(:keepalive, keepalive) * 1000).round
        args["grpc.keepalive_time_ms"] = interval_ms
        args["grpc.keepalive_timeout_ms"] = [interval_ms, 20_000].min
        args["grpc.keepalive_permit_without_calls"] = 1
        args["grpc.http2.max_pings_without_data"] = 0
      end
      args.merge(extra.transform_keys(&:to_s)).freeze
    end

    # The stub of this process, built on first use (and again in a forked
    # child, whose inherited channel belongs to the parent's gRPC runtime).
    def stub
      @mutex.synchronize do
        raise ClosedError if @closed
        return @stub if @stub && @stub_pid == Process.pid

        fork_state = GrpcRuntime.load!
        fork_state.use!
        grpc_guard do
          creds = credentials
          @channel = ::GRPC::Core::Channel.new(@target, @channel_args, creds)
          @stub = ::Occupancy::V1::Occupancy::Stub.new(@target, creds, channel_override: @channel)
        end
        @stub_pid = Process.pid
        @stub
      end
    end

    def credentials
      return ::GRPC::Core::ChannelCredentials.new(@ca_pem) if @ca_pem
      return ::GRPC::Core::ChannelCredentials.new if @tls

      :this_channel_is_insecure
    end

    def cached_occupied?(channel)
      watcher, fresh = current_watcher
      watcher.wait_synced(@check_timeout) if fresh
      synced, occupied, last_error = watcher.lookup(channel)
      return occupied if synced
      raise last_error if last_error && !last_error.outage? && !last_error.is_a?(ClosedError)

      reason = last_error ? " (last stream error: #{last_error.message})" : ""
      raise Error.new(Codes::UNAVAILABLE, "cached mode is not synchronised with the gate#{reason}")
    end

    # The watcher of this process, started on first use.
    # @return [Array(Watcher, Boolean)] the watcher, and whether it is new
    def current_watcher
      stub
      @mutex.synchronize do
        raise ClosedError if @closed
        return [@watcher, false] if @watcher && @watcher_pid == Process.pid

        request = ::Occupancy::V1::WatchOccupancyRequest.new(app_id: @app_id)
        @watcher = Watcher.new(
          open_stream: -> { stub.watch_occupancy(request, metadata: @metadata, return_op: true) },
          to_error: ->(e) { to_error(e) }
        )
        @watcher_pid = Process.pid
        GrpcRuntime.fork_state.register(@watcher)
        [@watcher.start, true]
      end
    end

    # Builds a request, turning protobuf's complaints about argument types
    # (bytes that are not UTF-8...) into INVALID_ARGUMENT.
    def build_request
      yield
    rescue TypeError, ArgumentError, RangeError, EncodingError => e
      raise InvalidArgumentError, e.message
    end

    def invoke(method, request, timeout)
      grpc_guard { stub.public_send(method, request, deadline: Time.now + timeout, metadata: @metadata) }
    end

    def grpc_guard
      yield
    rescue Error
      raise
    rescue StandardError => e
      raise to_error(e)
    end

    # Maps whatever grpc raised to an {Occupancy::Error}.
    def to_error(exception)
      case exception
      when Error then exception
      when ::GRPC::BadStatus then Error.new(exception.code, exception.details)
      when ::GRPC::Core::CallError then Error.new(Codes::INTERNAL, exception.message)
      else
        return ClosedError.new if @closed
        if GrpcRuntime.fork_refusal?(exception)
          return ForkError.new(GrpcRuntime.fork_state.fork_error_message(nil, Process.pid))
        end

        Error.new(Codes::UNKNOWN, "#{exception.class}: #{exception.message}")
      end
    end

    def report(error)
      @on_error.call(error)
    rescue StandardError => e
      @logger.warn("occupancy: the on_error hook raised #{e.class}: #{e.message}")
    end
  end
end
