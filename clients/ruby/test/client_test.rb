# frozen_string_literal: true

require "test_helper"

# Behaviour against the live gate.
class LiveGateTest < Minitest::Test
  Codes = Occupancy::Codes

  def test_webhooks_drive_occupancy
    channel = random_channel
    gate = client

    refute gate.occupied?(channel), "a channel nobody joined is vacant"
    occupy(channel)
    assert gate.occupied?(channel)
    vacate(channel)
    refute gate.occupied?(channel)
  end

  def test_publish_to_occupied_channel_reaches_pusher_once
    channel = random_channel
    occupy(channel)
    data = JSON.generate(job: channel, pct: 40)

    result = client.publish_if_occupied([channel], "progress", data)

    assert_instance_of Occupancy::PublishResult, result
    assert_equal [channel], result.published
    assert_equal [], result.skipped
    calls = pusher_calls_for(channel)
    assert_equal 1, calls.size, calls.inspect
    call = calls.first
    assert_equal "POST", call["method"]
    assert_equal "/apps/#{env('TEST_PUSHER_APP_ID')}/events", call["path"]
    assert_equal true, call["signature_valid"]
    assert_equal "progress", call.dig("body", "name")
    assert_equal data, call.dig("body", "data")
    assert_equal [channel], call.dig("body", "channels")
    refute call["body"].key?("socket_id"), "no socket_id was given"
  end

  def test_publish_passes_socket_id
    channel = random_channel
    occupy(channel)

    result = client.publish_if_occupied(channel, "progress", "{}", socket_id: "123.456")

    assert_equal [channel], result.published
    calls = pusher_calls_for(channel)
    assert_equal 1, calls.size, calls.inspect
    assert_equal "123.456", calls.first.dig("body", "socket_id")
  end

  def test_publish_to_vacant_channel_is_skipped_without_a_call
    channel = random_channel

    result = client.publish_if_occupied([channel], "progress", "{}")

    assert_equal [], result.published
    assert_equal [channel], result.skipped
    assert_empty pusher_calls_for(channel)
  end

  def test_publish_to_a_mix_calls_pusher_once_with_only_occupied_channels
    occupied = [random_channel, random_channel]
    vacant = [random_channel, random_channel]
    occupied.each { |c| occupy(c) }
    request = [vacant[0], occupied[0], vacant[1], occupied[1]]

    result = client.publish_if_occupied(request, "progress", '{"pct":99}')

    assert_equal occupied, result.published, "published keeps request order"
    assert_equal vacant, result.skipped, "skipped keeps request order"
    calls = pusher_calls_for(*request)
    assert_equal 1, calls.size, calls.inspect
    assert_equal occupied.sort, calls.first.dig("body", "channels").sort
  end

  def test_one_client_serves_many_calls_and_threads
    gate = client
    channel = random_channel
    occupy(channel)

    answers = Array.new(4) { Thread.new { Array.new(5) { gate.occupied?(channel) } } }.flat_map(&:value)

    assert_equal [true] * 20, answers
  end

  def test_default_deadlines
    gate = client
    assert_equal 1.0, gate.check_timeout
    assert_equal 5.0, gate.publish_timeout
    assert_equal true, gate.fail_open, "failing open is the default"
    assert_equal "", gate.app_id
  end

  def test_closed_client_raises_the_closed_error_for_every_call_whatever_the_policy
    [true, false].each do |fail_open|
      gate = Occupancy::Client.new(env("OCCUPANCY_ADDR"), fail_open: fail_open)
      assert gate.occupied?(random_channel) == false, "usable before close"
      gate.close
      gate.close # harmless

      assert gate.closed?
      assert_occupancy_error(Codes::CANCELLED, Occupancy::ClosedError) { gate.occupied?(random_channel) }
      assert_occupancy_error(Codes::CANCELLED, Occupancy::ClosedError) { gate.occupied?("bad name!") }
      assert_occupancy_error(Codes::CANCELLED, Occupancy::ClosedError) do
        gate.publish_if_occupied([random_channel], "e", "{}")
      end
    end
  end

  def test_closed_before_first_use_never_loads_a_channel
    gate = Occupancy::Client.new(env("OCCUPANCY_ADDR"))
    gate.close
    assert_raises(Occupancy::ClosedError) { gate.occupied?(random_channel) }
  end

  def test_unknown_app_id_raises_not_found_even_when_failing_open
    seen = []
    gate = client(app_id: "no-such-app", on_error: ->(e) { seen << e })

    assert_occupancy_error(Codes::NOT_FOUND) { gate.occupied?(random_channel) }
    assert_empty seen, "a configuration bug is raised, not swallowed"
  end

  def test_app_id_of_the_configured_app_is_accepted
    channel = random_channel
    occupy(channel)
    assert client(app_id: env("TEST_PUSHER_APP_ID")).occupied?(channel)
  end
end

# Names are checked locally, before any call: they raise even while the gate
# is down or hung, whatever the failure policy.
class LocalChecksTest < Minitest::Test
  Codes = Occupancy::Codes

  BAD_CHANNELS = ["", "bad channel!", "a" * 165, "ümlaut", "slash/no", "tab\t", 42, nil, :sym].freeze
  GOOD_CHANNELS = ["a", "A-Za-z0-9_-=@,.;", "private-job-42", "presence-x", "a" * 164].freeze

  def test_bad_channel_names_raise_without_a_call_even_when_failing_open_on_a_dead_gate
    seen = []
    gate = client(env("OCCUPANCY_DEAD_ADDR"), on_error: ->(e) { seen << e })

    BAD_CHANNELS.each do |name|
      error = assert_occupancy_error(Codes::INVALID_ARGUMENT, Occupancy::InvalidArgumentError) { gate.occupied?(name) }
      assert error.invalid_argument?
    end
    assert_empty seen, "a caller bug is raised, not swallowed"
    assert_equal true, gate.occupied?(GOOD_CHANNELS.first), "a good name on a dead gate fails open"
  end

  def test_checks_happen_before_the_call_on_a_hung_gate
    server = TCPServer.new("127.0.0.1", 0)
    gate = client("127.0.0.1:#{server.addr[1]}", check_timeout: 2, fail_open: false)

    elapsed = timed do
      assert_raises(Occupancy::InvalidArgumentError) { gate.occupied?("bad channel!") }
      assert_raises(Occupancy::InvalidArgumentError) { gate.publish_if_occupied(["ok", "bad!"], "e", "{}") }
    end
    assert_operator elapsed, :<, 0.5, "no call was made"
  ensure
    server&.close
  end

  def test_good_names_are_accepted_by_the_gate
    gate = client(fail_open: false)
    GOOD_CHANNELS.each { |name| assert_equal false, gate.occupied?(name), name }
  end

  def test_publish_checks_channel_count_event_and_types_locally
    gate = client(env("OCCUPANCY_DEAD_ADDR"))
    ok = random_channel
    {
      "no channels" => -> { gate.publish_if_occupied([], "e", "{}") },
      "101 channels" => -> { gate.publish_if_occupied(Array.new(101) { |i| "c#{i}" }, "e", "{}") },
      "bad channel" => -> { gate.publish_if_occupied([ok, "bad channel!"], "e", "{}") },
      "empty event" => -> { gate.publish_if_occupied([ok], "", "{}") },
      "201-char event" => -> { gate.publish_if_occupied([ok], "e" * 201, "{}") },
      "non-String data" => -> { gate.publish_if_occupied([ok], "e", { pct: 1 }) },
      "non-String socket_id" => -> { gate.publish_if_occupied([ok], "e", "{}", socket_id: 1) }
    }.each do |what, call|
      error = assert_raises(Occupancy::InvalidArgumentError, what, &call)
      assert_equal "INVALID_ARGUMENT", error.code_name, what
    end
  end

  def test_boundaries_reach_the_gate
    gate = client
    result = gate.publish_if_occupied(Array.new(100) { random_channel }, "e" * 200, "{}")
    assert_equal 100, result.skipped.size
  end
end

# Behaviour when the gate is down (nothing listens on OCCUPANCY_DEAD_ADDR).
class DeadGateTest < Minitest::Test
  Codes = Occupancy::Codes
  DOWN = %w[UNAVAILABLE DEADLINE_EXCEEDED].freeze

  def test_fail_open_answers_occupied_and_the_hook_sees_every_error
    seen = []
    gate = client(env("OCCUPANCY_DEAD_ADDR"), on_error: ->(e) { seen << e })

    3.times { assert_equal true, gate.occupied?(random_channel) }
    assert_equal 3, seen.size
    seen.each do |e|
      assert_instance_of Occupancy::Error, e
      assert_includes DOWN, e.code_name, e.message
      assert e.outage?
    end
  end

  def test_fail_open_survives_a_raising_hook_and_logs_it
    logger, log = string_logger
    gate = client(env("OCCUPANCY_DEAD_ADDR"), logger: logger, on_error: ->(_e) { raise "hook bug" })

    assert_equal true, gate.occupied?(random_channel)
    assert_match(/on_error hook raised RuntimeError: hook bug/, log.string)
  end

  def test_default_hook_warns_once_for_a_burst_and_counts_the_errors
    logger, log = string_logger
    gate = client(env("OCCUPANCY_DEAD_ADDR"), logger: logger)

    5.times { assert_equal true, gate.occupied?(random_channel) }

    warnings = log.string.lines.grep(/WARN/)
    assert_equal 1, warnings.size, log.string
    assert_match(/fail-open answered "occupied"; 1 error swallowed since the last warning/, warnings.first)
    assert_match(/UNAVAILABLE|DEADLINE_EXCEEDED/, warnings.first)
  end

  def test_default_logger_is_stderr
    assert_output(nil, /WARN -- : occupancy: the gate check failed/) do
      # The default logger writes to the $stderr of construction time.
      assert_equal true, client(env("OCCUPANCY_DEAD_ADDR")).occupied?(random_channel)
    end
  end

  def test_raise_policy_raises_the_outage
    gate = client(env("OCCUPANCY_DEAD_ADDR"), fail_open: false)

    error = assert_raises(Occupancy::Error) { gate.occupied?(random_channel) }
    assert_includes DOWN, error.code_name, error.message
  end

  def test_publish_raises_whatever_the_policy
    [true, false].each do |fail_open|
      seen = []
      gate = client(env("OCCUPANCY_DEAD_ADDR"), fail_open: fail_open, on_error: ->(e) { seen << e })

      error = assert_raises(Occupancy::Error) { gate.publish_if_occupied([random_channel], "progress", "{}") }
      assert_includes DOWN, error.code_name, "fail_open #{fail_open}: #{error.message}"
      assert_empty seen
    end
  end
end

# Deadlines, against a listener that accepts connections and never answers
# (a hung gate): the only way to see a deadline fire without slowing the gate.
class HungGateTest < Minitest::Test
  Codes = Occupancy::Codes

  def setup
    super
    @server = TCPServer.new("127.0.0.1", 0)
    @held = Queue.new
    @acceptor = Thread.new { loop { @held << @server.accept } }
  end

  def teardown
    super
    @acceptor&.kill&.join
    @held.pop.close until @held.nil? || @held.empty?
    @server&.close
  end

  def hung_addr
    "127.0.0.1:#{@server.addr[1]}"
  end

  def test_check_gives_up_after_check_timeout
    gate = client(hung_addr, check_timeout: 0.3, fail_open: false)

    elapsed = timed { assert_occupancy_error(Codes::DEADLINE_EXCEEDED) { gate.occupied?(random_channel) } }
    assert_in_delta 0.3, elapsed, 0.25
  end

  def test_fail_open_answers_occupied_after_check_timeout
    seen = []
    gate = client(hung_addr, check_timeout: 0.3, on_error: ->(e) { seen << e.code_name })

    assert_equal true, gate.occupied?(random_channel)
    assert_equal ["DEADLINE_EXCEEDED"], seen
  end

  def test_publish_gives_up_after_publish_timeout
    gate = client(hung_addr, check_timeout: 0.1, publish_timeout: 0.6)

    elapsed = timed do
      assert_occupancy_error(Codes::DEADLINE_EXCEEDED) { gate.publish_if_occupied([random_channel], "e", "{}") }
    end
    assert_in_delta 0.6, elapsed, 0.25, "publish uses publish_timeout, not check_timeout"
  end
end
