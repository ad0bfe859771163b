# frozen_string_literal: true

require "test_helper"

# Cached mode against the real gate's WatchOccupancy stream.
class CachedModeTest < Minitest::Test
  def watcher_threads
    Thread.list.count { |t| t.alive? && t.name == "occupancy-watch" }
  end

  def test_a_webhook_is_seen_locally_and_checks_make_no_call
    channel = random_channel
    forwarder = proxy(env("OCCUPANCY_ADDR"))
    gate = client(forwarder.addr, cached: true, fail_open: false)

    assert_equal false, gate.occupied?(channel), "the first check waits for the snapshot"
    assert gate.synced?
    occupy(channel)
    eventually("the webhook reached the local copy") { gate.occupied?(channel) }
    vacate(channel)
    eventually("the vacating webhook reached the local copy") { !gate.occupied?(channel) }

    sleep 0.2
    before = forwarder.bytes_from_client
    200.times { gate.occupied?(channel) }
    assert_equal before, forwarder.bytes_from_client, "answers come from the local copy, with no call"

    occupy(channel)
    eventually("occupied again") { gate.occupied?(channel) }
    assert_equal [channel], gate.publish_if_occupied([channel], "progress", "{}").published
    assert_operator forwarder.bytes_from_client, :>, before, "publishing still calls the gate"
  end

  def test_tls_token_and_a_stream_refused_for_configuration_raise
    channel = random_channel
    occupy(channel)
    secure = client(env("OCCUPANCY_SECURE_ADDR"), ca_file: env("OCCUPANCY_TLS_CA"), cached: true,
                                                  token: env("OCCUPANCY_TEST_TOKEN"), fail_open: false)
    assert secure.occupied?(channel)

    seen = []
    no_token = client(env("OCCUPANCY_SECURE_ADDR"), ca_file: env("OCCUPANCY_TLS_CA"), cached: true,
                                                    on_error: ->(e) { seen << e })
    error = assert_raises(Occupancy::Error) { no_token.occupied?(channel) }
    assert_equal "UNAUTHENTICATED", error.code_name, "a non-outage stream error is raised, even failing open"
    assert_empty seen
  end

  def test_channels_occupied_before_subscribing_come_with_the_snapshot
    channel = random_channel
    occupy(channel)
    assert client(cached: true, fail_open: false).occupied?(channel)
  end

  def test_a_gate_restart_is_survived
    before = random_channel
    gate = client(cached: true, fail_open: false)
    occupy(before)
    eventually("synchronised, with the channel") { gate.occupied?(before) && gate.synced? }

    restart_gate

    after = random_channel
    occupy(after)
    eventually("a webhook after the restart reached the local copy", timeout: 10) do
      gate.occupied?(after)
    rescue Occupancy::Error
      false # not synchronised again yet
    end
    assert gate.occupied?(before), "the set survived (same Redis)"
  end

  def test_not_synchronised_answers_the_failure_policy
    seen = []
    open_gate = client(env("OCCUPANCY_DEAD_ADDR"), cached: true, check_timeout: 2, on_error: ->(e) { seen << e })
    elapsed = timed { assert_equal true, open_gate.occupied?(random_channel) }
    assert_operator elapsed, :<, 1.0, "a refused subscription answers without waiting for check_timeout"
    assert_operator timed { open_gate.occupied?(random_channel) }, :<, 0.2
    seen.pop
    refute open_gate.synced?
    assert_equal ["UNAVAILABLE"], seen.map(&:code_name)
    assert_match(/not synchronised/, seen.first.message)

    raising = client(env("OCCUPANCY_DEAD_ADDR"), cached: true, check_timeout: 0.3, fail_open: false)
    error = assert_raises(Occupancy::Error) { raising.occupied?(random_channel) }
    assert_equal "UNAVAILABLE", error.code_name
  end

  def test_the_first_check_waits_at_most_check_timeout_for_a_snapshot
    hung = TCPServer.new("127.0.0.1", 0)
    seen = []
    gate = client("127.0.0.1:#{hung.addr[1]}", cached: true, check_timeout: 0.3, on_error: ->(e) { seen << e })

    elapsed = timed { assert_equal true, gate.occupied?(random_channel) }
    assert_operator elapsed, :>=, 0.28
    assert_operator elapsed, :<=, 0.8
    assert_operator timed { gate.occupied?(random_channel) }, :<, 0.2, "later checks do not wait"
    assert_equal %w[UNAVAILABLE UNAVAILABLE], seen.map(&:code_name)
  ensure
    hung&.close
  end

  def test_local_name_checks_still_apply
    gate = client(env("OCCUPANCY_DEAD_ADDR"), cached: true, check_timeout: 0.3)
    assert_raises(Occupancy::InvalidArgumentError) { gate.occupied?("bad channel!") }
  end

  def test_close_ends_the_subscription
    before = watcher_threads
    gate = Occupancy::Client.new(env("OCCUPANCY_ADDR"), cached: true)
    gate.occupied?(random_channel)
    assert_equal before + 1, watcher_threads

    gate.close
    assert_equal before, watcher_threads
    assert_raises(Occupancy::ClosedError) { gate.occupied?(random_channel) }
  end

  # A cached client built before fork (and not used) subscribes again in each
  # child.
  def test_children_restart_the_subscription
    channel = random_channel
    occupy(channel)
    script = <<~RUBY
      $stdout.sync = true
      require "occupancy"
      gate = Occupancy::Client.new(cached: true, fail_open: false)
      pids = 2.times.map do
        fork do
          answer = gate.occupied?(ENV.fetch("CHANNEL"))
          puts "child \#{Process.pid} synced=\#{gate.synced?} occupied=\#{answer}"
          exit!(0)
        rescue Exception => e
          puts "child error \#{e.class}: \#{e.message}"
          exit!(1)
        end
      end
      codes = pids.map { |pid| Process.wait2(pid)[1].exitstatus }
      puts "parent occupied=\#{gate.occupied?(ENV.fetch("CHANNEL"))} children=\#{codes.inspect}"
      gate.close
    RUBY
    out, err, status = run_ruby(script, env: { "CHANNEL" => channel })

    assert status.success?, "#{out}\n#{err}"
    assert_equal 2, out.scan(/child \d+ synced=true occupied=true/).size, out
    assert_includes out, "parent occupied=true children=[0, 0]"
  end
end

# The stream protocol and the resubscription backoff, driven by a scripted
# stream (unit tests of the watcher; the gate itself is tested above).
class WatcherTest < Minitest::Test
  Message = Struct.new(:kind, :occupied, :vacated)

  # A stream whose messages are pushed by the test.
  class ScriptedOp
    def initialize(queue)
      @queue = queue
    end

    def execute
      Enumerator.new do |y|
        loop do
          item = @queue.pop
          raise item if item.is_a?(Exception)
          break if item == :end

          y << item
        end
      end
    end

    def cancel
      @queue << Occupancy::Error.new(Occupancy::Codes::CANCELLED, "cancelled")
    end
  end

  def msg(kind, occupied = [], vacated = [])
    Message.new(kind, occupied, vacated)
  end

  def test_follows_reset_snapshot_synced_change
    queue = Queue.new
    watcher = Occupancy::Watcher.new(open_stream: -> { ScriptedOp.new(queue) }, to_error: ->(e) { e })
    watcher.start
    queue << msg(:KIND_RESET) << msg(:KIND_SNAPSHOT, %w[a b]) << msg(:KIND_SNAPSHOT, %w[c])
    sleep 0.05
    refute watcher.synced?, "not synchronised before SYNCED"
    queue << msg(:KIND_SYNCED)
    assert watcher.wait_synced(1)
    assert_equal [true, true, nil], watcher.lookup("c")

    queue << msg(:KIND_CHANGE, %w[d], %w[a])
    sleep 0.05
    assert_equal true, watcher.lookup("d")[1]
    assert_equal false, watcher.lookup("a")[1]

    queue << msg(:KIND_RESET)
    sleep 0.05
    refute watcher.synced?, "RESET drops the copy"
    assert_equal 0, watcher.size
    queue << msg(:KIND_SNAPSHOT, %w[e]) << msg(:KIND_SYNCED)
    assert watcher.wait_synced(1)
    assert_equal [true, true, nil], watcher.lookup("e")
  ensure
    watcher&.stop
  end

  def test_a_broken_stream_is_not_synchronised_and_keeps_its_error
    queue = Queue.new
    watcher = Occupancy::Watcher.new(open_stream: -> { ScriptedOp.new(queue) }, to_error: ->(e) { e })
    watcher.start
    queue << msg(:KIND_RESET) << msg(:KIND_SYNCED)
    assert watcher.wait_synced(1)
    queue << Occupancy::Error.new(Occupancy::Codes::UNIMPLEMENTED, "not served")
    sleep 0.05
    synced, _, error = watcher.lookup("x")
    refute synced
    assert_equal "UNIMPLEMENTED", error.code_name
  ensure
    watcher&.stop
  end

  def test_resubscribes_after_100_ms_doubling_to_2_s_and_resets_once_synchronised
    times = []
    script = Queue.new
    open_stream = lambda do
      times << Process.clock_gettime(Process::CLOCK_MONOTONIC)
      raise Occupancy::Error.new(Occupancy::Codes::UNAVAILABLE, "down") if times.size <= 7

      queue = Queue.new
      queue << msg(:KIND_RESET) << msg(:KIND_SYNCED) << :end # synchronised, then the stream ends
      script << :synced
      ScriptedOp.new(queue)
    end
    watcher = Occupancy::Watcher.new(open_stream: open_stream, to_error: ->(e) { e })
    watcher.start
    Timeout.timeout(15) { script.pop }
    sleep 0.3
    watcher.stop

    gaps = times.each_cons(2).map { |a, b| b - a }
    shown = gaps.map { |g| g.round(2) }
    # Scheduling only ever adds delay, so the bounds are lopsided.
    [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0].each_with_index do |want, i|
      assert_operator gaps[i], :>=, want - 0.02, "gap #{i}: #{shown}"
      assert_operator gaps[i], :<=, want + [0.12, want * 0.2].max, "gap #{i}: #{shown}"
    end
    assert_operator gaps[7], :<=, 0.25, "after a sync the backoff starts again at 100 ms: #{shown}"
  end

  def test_stop_interrupts_the_backoff
    watcher = Occupancy::Watcher.new(
      open_stream: -> { raise Occupancy::Error.new(Occupancy::Codes::UNAVAILABLE, "down") },
      to_error: ->(e) { e }
    )
    watcher.start
    sleep 3.5 # backoff now 2 s
    assert_operator timed { watcher.stop }, :<, 0.5
  end
end
