# frozen_string_literal: true

require "test_helper"

# Fork safety on this machine's grpc, in fresh Ruby processes (this test
# process has used gRPC long ago, so it cannot be the parent).
class ForkTest < Minitest::Test
  def grpc_forks?
    Occupancy::GrpcRuntime.fork_support?(Occupancy::GrpcRuntime.grpc_version)
  end

  def test_a_client_built_but_not_used_before_fork_works_in_every_child_and_the_parent
    channel = random_channel
    occupy(channel)
    script = <<~RUBY
      $stdout.sync = true
      require "occupancy"
      gate = Occupancy::Client.new(fail_open: false)
      pids = 4.times.map do
        fork do
          ok = gate.occupied?(ENV.fetch("CHANNEL")) && gate.publish_if_occupied(ENV.fetch("CHANNEL"), "fork", "{}").published.size == 1
          puts "child \#{ok}"
          gate.close # the child's own channel; the parent's is not touched
          exit!(ok ? 0 : 1)
        rescue Exception => e
          puts "child error \#{e.class}: \#{e.message}"
          exit!(1)
        end
      end
      codes = pids.map { |pid| Process.wait2(pid)[1].exitstatus }
      puts "children \#{codes.inspect}"
      puts "parent \#{gate.occupied?(ENV.fetch("CHANNEL"))}"
    RUBY
    out, err, status = run_ruby(script, env: { "CHANNEL" => channel })

    assert status.success?, "#{out}\n#{err}"
    assert_includes out, "children [0, 0, 0, 0]", out
    assert_includes out, "parent true", out
    assert_equal 4, pusher_calls_for(channel).size
  end

  def test_a_child_of_a_parent_that_called_gets_one_clear_error_quickly
    channel = random_channel
    occupy(channel)
    script = <<~RUBY
      $stdout.sync = true
      require "occupancy"
      hooked = []
      gate = Occupancy::Client.new(on_error: ->(e) { hooked << e }) # fail-open
      puts "parent before \#{gate.occupied?(ENV.fetch("CHANNEL"))}"
      pid = fork do
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        [-> { gate.occupied?(ENV.fetch("CHANNEL")) },
         -> { gate.publish_if_occupied(ENV.fetch("CHANNEL"), "e", "{}") },
         -> { Occupancy::Client.new.occupied?(ENV.fetch("CHANNEL")) },
         -> { Occupancy::Client.new(cached: true).occupied?(ENV.fetch("CHANNEL")) }].each do |call|
          answer = call.call
          puts "child answered \#{answer.inspect}"
        rescue Occupancy::Error => e
          puts "child \#{e.class} \#{e.code_name} in \#{(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).round(3)}s: \#{e.message}"
        end
        puts "child hooked \#{hooked.size}"
        gate.close # drops the parent's channel without touching it
        puts "child closed"
        exit!(0)
      end
      Process.wait(pid)
      puts "parent after \#{gate.occupied?(ENV.fetch("CHANNEL"))} hooked \#{hooked.size}"
    RUBY
    out, err, status = run_ruby(script, env: { "CHANNEL" => channel }, timeout: 30)

    assert status.success?, "#{out}\n#{err}"
    assert_includes out, "parent before true"
    assert_includes out, "child closed"
    assert_includes out, "parent after true hooked 0", "the parent still works"
    if grpc_forks?
      assert_equal 2, out.scan("child answered true").size, out
    else
      errors = out.lines.grep(/^child Occupancy::ForkError FAILED_PRECONDITION/)
      assert_equal 4, errors.size, out
      errors.each do |line|
        assert_operator Float(line[/in ([\d.]+)s/, 1]), :<, 1.0, "quickly: #{line}"
        assert_match(/grpc 1\.\d+\.\d+ cannot be used after fork once the parent used it/, line)
        assert_match(/do not call the gate in the parent before forking/, line)
        assert_match(/grpc >= 1\.57/, line)
      end
      assert_includes out, "child hooked 0", "never fail-open silently"
    end
  end

  def test_grpc_used_by_another_library_before_fork_also_gives_the_fork_error
    skip_reason = nil
    script = <<~RUBY
      $stdout.sync = true
      require "grpc"
      GRPC::Core::Channel.new("127.0.0.1:1", {}, :this_channel_is_insecure) # someone else used grpc
      require "occupancy"
      pid = fork do
        Occupancy::Client.new.occupied?("x")
        puts "child answered"
      rescue Occupancy::Error => e
        puts "child \#{e.class}: \#{e.message}"
      ensure
        exit!(0)
      end
      Process.wait(pid)
    RUBY
    out, err, status = run_ruby(script)
    assert status.success?, err
    if grpc_forks?
      assert_match(/child (answered|Occupancy::ForkError)/, out) # depends on GRPC_ENABLE_FORK_SUPPORT
    else
      assert_match(/child Occupancy::ForkError: .*forked from a process, which had already made gRPC calls/, out)
    end
    assert_nil skip_reason
  end

  def test_the_fork_hook_is_installed_only_with_grpc_157
    Occupancy::GrpcRuntime.load!
    assert_equal grpc_forks? && Process.respond_to?(:_fork), Occupancy::GrpcRuntime.fork_hook_installed?
  end
end

# The grpc >= 1.57 branch (GRPC.prefork / postfork_*), which this machine's
# grpc 1.51 cannot run: its logic with a stand-in for the GRPC module.
class ForkSupportTest < Minitest::Test
  ForkState = Occupancy::GrpcRuntime::ForkState

  class FakeGRPC
    attr_reader :events

    def initialize(fail_prefork: nil)
      @events = []
      @fail_prefork = fail_prefork
    end

    def prefork
      raise @fail_prefork if @fail_prefork

      @events << :prefork
    end

    def postfork_parent = @events << :postfork_parent
    def postfork_child = @events << :postfork_child
  end

  class FakeWatcher
    attr_reader :events

    def initialize(events) = @events = events
    def pause = @events << :pause
    def resume = @events << :resume
  end

  def test_version_switch
    { "1.51.1" => false, "1.56.2" => false, "1.57.0.pre1" => true, "1.57.0" => true, "1.62.3" => true,
      "1.70.1" => true, "2.0.0" => true }.each do |version, expected|
      assert_equal expected, Occupancy::GrpcRuntime.fork_support?(version), version
    end
  end

  def test_new_grpc_prefork_and_postfork_around_a_fork_with_watchers_paused
    pid = 100
    grpc = FakeGRPC.new
    state = ForkState.new(grpc: grpc, version: "1.57.0", pid: -> { pid })
    state.use!
    state.register(FakeWatcher.new(grpc.events))

    parent = state.before_fork
    assert_equal %i[pause prefork], grpc.events
    state.after_fork(parent, child: false)
    assert_equal %i[pause prefork postfork_parent resume], grpc.events

    grpc.events.clear
    child = state.before_fork
    pid = 101 # now in the child
    state.after_fork(child, child: true)
    assert_equal %i[pause prefork postfork_child], grpc.events, "no resume in the child: it resubscribes on use"
    state.use! # gRPC is usable in the child
    assert_equal 101, state.usable_in
  end

  def test_new_grpc_nothing_to_do_when_grpc_was_not_used_here
    grpc = FakeGRPC.new
    state = ForkState.new(grpc: grpc, version: "1.60.0", pid: -> { 1 })
    assert_nil state.before_fork
    state.after_fork(nil, child: true)
    assert_empty grpc.events
  end

  def test_new_grpc_failed_prefork_gives_the_child_a_fork_error_naming_it
    pid = 200
    grpc = FakeGRPC.new(fail_prefork: RuntimeError.new("forking with gRPC/Ruby is only supported on linux with env var: GRPC_ENABLE_FORK_SUPPORT=1"))
    state = ForkState.new(grpc: grpc, version: "1.60.0", pid: -> { pid })
    state.use!
    fork_state = state.before_fork
    pid = 201
    state.after_fork(fork_state, child: true)

    error = assert_raises(Occupancy::ForkError) { state.use! }
    assert_match(/GRPC\.prefork failed with .*GRPC_ENABLE_FORK_SUPPORT=1/, error.message)
    assert_match(/forked from pid 200/, error.message)
    assert_empty grpc.events, "no postfork without a prefork"
  end

  def test_old_grpc_child_of_a_parent_that_used_it_gets_the_fork_error
    pid = 300
    grpc = FakeGRPC.new
    state = ForkState.new(grpc: grpc, version: "1.51.1", pid: -> { pid })
    state.use!
    assert_nil state.before_fork, "old grpc has no prefork"
    pid = 301
    error = assert_raises(Occupancy::ForkError) { state.use! }
    assert_equal "FAILED_PRECONDITION", error.code_name
    assert_match(/grpc 1\.51\.1 cannot be used after fork once the parent used it/, error.message)
    assert_match(/do not call the gate in the parent before forking/, error.message)
    assert_match(/grpc >= 1\.57/, error.message)
    pid = 300
    state.use! # the parent is fine
  end

  # The Process._fork hook and load! on the >= 1.57 branch, in a real fork:
  # load! believes grpc is 1.57, so it sets GRPC_ENABLE_FORK_SUPPORT and
  # installs the hook; the stand-in GRPC records the calls.
  def test_process_fork_hook_calls_prefork_and_postfork_in_a_real_fork
    script = <<~RUBY
      $stdout.sync = true
      require "occupancy"
      ENV.delete("GRPC_ENABLE_FORK_SUPPORT")
      Occupancy::GrpcRuntime.define_singleton_method(:grpc_version) { "1.57.0" }
      Occupancy::GrpcRuntime.load!
      puts "env=\#{ENV["GRPC_ENABLE_FORK_SUPPORT"]} hook=\#{Occupancy::GrpcRuntime.fork_hook_installed?}"
      events = []
      grpc = Object.new
      %i[prefork postfork_parent postfork_child].each { |m| grpc.define_singleton_method(m) { events << m } }
      state = Occupancy::GrpcRuntime::ForkState.new(grpc: grpc, version: "1.57.0")
      Occupancy::GrpcRuntime.instance_variable_set(:@fork_state, state)
      state.use!
      pid = fork do
        puts "child events=\#{events.inspect} usable_here=\#{state.usable_in == Process.pid}"
        exit!(0)
      end
      Process.wait(pid)
      puts "parent events=\#{events.inspect}"
      IO.popen("-") { |io| io ? print(io.read) : (puts "popen child events=\#{events.inspect}"; exit!(0)) }
    RUBY
    out, err, status = run_ruby(script)

    assert status.success?, "#{out}\n#{err}"
    if Process.respond_to?(:_fork)
      assert_includes out, "env=1 hook=true"
      assert_includes out, "child events=[:prefork, :postfork_child] usable_here=true"
      assert_includes out, "parent events=[:prefork, :postfork_parent]"
      assert_includes out, "popen child events=[:prefork, :postfork_parent, :prefork, :postfork_child]"
    else
      assert_includes out, "hook=false"
    end
  end
end
