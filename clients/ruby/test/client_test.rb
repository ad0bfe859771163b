# frozen_string_literal: true

require "test_helper"

# Behaviour against a live gate.
class LiveGateTest < Minitest::Test
  Codes = GRPC::Core::StatusCodes

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
    assert_equal true, calls.first["signature_valid"]
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
    assert_equal true, calls.first["signature_valid"]
    assert_equal occupied.sort, calls.first.dig("body", "channels").sort
    assert_equal '{"pct":99}', calls.first.dig("body", "data")
  end

  def test_bad_channel_raises_invalid_argument_even_when_failing_open
    seen = []
    fail_open = client(on_error: :open, error_handler: ->(e) { seen << e })

    error = assert_occupancy_error(Codes::INVALID_ARGUMENT) { fail_open.occupied?("bad channel!") }
    assert error.invalid_argument?
    assert_equal "INVALID_ARGUMENT", error.code_name
    assert_empty seen, "a caller bug is raised, not reported and swallowed"

    assert_occupancy_error(Codes::INVALID_ARGUMENT) { client(on_error: :raise).occupied?("bad channel!") }
  end

  def test_bad_arguments_to_publish_raise_invalid_argument
    gate = client
    assert_occupancy_error(Codes::INVALID_ARGUMENT) { gate.publish_if_occupied(["bad channel!"], "e", "{}") }
    assert_occupancy_error(Codes::INVALID_ARGUMENT) { gate.publish_if_occupied([], "e", "{}") }
    assert_occupancy_error(Codes::INVALID_ARGUMENT) { gate.publish_if_occupied([random_channel], "", "{}") }
  end

  def test_wrong_argument_types_raise_invalid_argument_before_calling
    gate = client
    assert_occupancy_error(Codes::INVALID_ARGUMENT) { gate.occupied?(42) }
    assert_occupancy_error(Codes::INVALID_ARGUMENT) { gate.publish_if_occupied([random_channel], "e", { pct: 1 }) }
  end

  def test_one_client_serves_many_calls_and_threads
    gate = client
    channel = random_channel
    occupy(channel)

    answers = Array.new(4) { Thread.new { Array.new(5) { gate.occupied?(channel) } } }.flat_map(&:value)

    assert_equal [true] * 20, answers
  end

  def test_closed_client_raises_cancelled_whatever_the_policy
    gate = Occupancy::Client.new(env("OCCUPANCY_ADDR"))
    gate.close
    gate.close

    assert gate.closed?
    assert_occupancy_error(Codes::CANCELLED) { gate.occupied?(random_channel) }
    assert_occupancy_error(Codes::CANCELLED) { gate.publish_if_occupied([random_channel], "e", "{}") }
  end
end

# Behaviour when the gate is down (nothing listens on OCCUPANCY_DEAD_ADDR).
class DeadGateTest < Minitest::Test
  Codes = GRPC::Core::StatusCodes
  DOWN = [Codes::UNAVAILABLE, Codes::DEADLINE_EXCEEDED].freeze

  def test_fail_open_answers_occupied_and_reports_the_error
    seen = []
    gate = client(env("OCCUPANCY_DEAD_ADDR"), error_handler: ->(e) { seen << e })

    assert_equal :open, gate.on_error, "failing open is the default"
    assert_equal true, gate.occupied?(random_channel)
    assert_equal 1, seen.size
    assert_instance_of Occupancy::Error, seen.first
    assert_includes DOWN, seen.first.code, seen.first.message
  end

  def test_fail_open_survives_a_raising_error_handler
    gate = client(env("OCCUPANCY_DEAD_ADDR"), error_handler: ->(_e) { raise "handler bug" })

    assert_output(nil, /error_handler raised RuntimeError: handler bug/) do
      assert_equal true, gate.occupied?(random_channel)
    end
  end

  def test_fail_open_warns_by_default
    gate = client(env("OCCUPANCY_DEAD_ADDR"))

    assert_output(nil, /occupancy: gate check failed/) do
      assert_equal true, gate.occupied?(random_channel)
    end
  end

  def test_raise_mode_raises_unavailable
    gate = client(env("OCCUPANCY_DEAD_ADDR"), on_error: :raise)

    error = assert_raises(Occupancy::Error) { gate.occupied?(random_channel) }
    assert_includes DOWN, error.code, error.message
  end

  def test_publish_raises_whatever_the_policy
    [:open, :raise].each do |policy|
      gate = client(env("OCCUPANCY_DEAD_ADDR"), on_error: policy, error_handler: nil)

      error = assert_raises(Occupancy::Error) { gate.publish_if_occupied([random_channel], "progress", "{}") }
      assert_includes DOWN, error.code, "#{policy}: #{error.message}"
    end
  end

end

# Deadlines, against a listener that accepts connections and never answers
# (a hung gate): the only way to see a deadline fire without slowing the gate.
class HungGateTest < Minitest::Test
  Codes = GRPC::Core::StatusCodes

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

  def test_check_gives_up_after_timeout
    gate = client(hung_addr, timeout: 0.3, on_error: :raise)

    elapsed = timed { assert_occupancy_error(Codes::DEADLINE_EXCEEDED) { gate.occupied?(random_channel) } }
    assert_in_delta 0.3, elapsed, 0.25
  end

  def test_fail_open_answers_occupied_after_timeout
    seen = []
    gate = client(hung_addr, timeout: 0.3, error_handler: ->(e) { seen << e.code })

    assert_equal true, gate.occupied?(random_channel)
    assert_equal [Codes::DEADLINE_EXCEEDED], seen
  end

  def test_publish_gives_up_after_publish_timeout
    gate = client(hung_addr, timeout: 0.1, publish_timeout: 0.6)

    elapsed = timed do
      assert_occupancy_error(Codes::DEADLINE_EXCEEDED) { gate.publish_if_occupied([random_channel], "e", "{}") }
    end
    assert_in_delta 0.6, elapsed, 0.25, "publish uses publish_timeout, not timeout"
  end

  private

  def timed
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    yield
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  end
end

# Construction-time validation, which needs no gate but still runs under the
# harness like the rest of the suite.
class ClientOptionsTest < Minitest::Test
  def test_defaults
    gate = client
    assert_equal 1.0, gate.timeout
    assert_equal 5.0, gate.publish_timeout
    assert_equal :open, gate.on_error
    assert_equal env("OCCUPANCY_ADDR"), gate.target
  end

  def test_rejects_bad_options
    addr = env("OCCUPANCY_ADDR")
    assert_raises(ArgumentError) { Occupancy::Client.new(addr, on_error: :ignore) }
    assert_raises(ArgumentError) { Occupancy::Client.new(addr, timeout: 0) }
    assert_raises(ArgumentError) { Occupancy::Client.new(addr, publish_timeout: "5") }
    assert_raises(ArgumentError) { Occupancy::Client.new(addr, error_handler: "log") }
    assert_raises(ArgumentError) { Occupancy::Client.new("") }
  end
end
