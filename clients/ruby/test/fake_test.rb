# frozen_string_literal: true

require "test_helper"

# Occupancy::Fake, the test double shipped for encoder teams, tested as a
# product: same public methods and behaviour as the client, no gate.
class FakeTest < Minitest::Test
  def test_has_the_clients_public_methods
    client_methods = Occupancy::Client.public_instance_methods(false) - %i[target check_timeout publish_timeout app_id channel_args]
    client_methods.each do |name|
      assert Occupancy::Fake.public_method_defined?(name), "Fake lacks Client##{name}"
      assert_equal Occupancy::Client.instance_method(name).parameters.map(&:first),
                   Occupancy::Fake.instance_method(name).parameters.map(&:first), "signature of #{name}"
    end
  end

  def test_channels_are_marked_by_hand
    gate = Occupancy::Fake.new(occupied: ["job-1"])
    assert gate.occupied?("job-1")
    refute gate.occupied?("job-2")
    gate.occupy("job-2").vacate("job-1")
    assert gate.occupied?("job-2")
    refute gate.occupied?("job-1")
  end

  def test_publishes_are_recorded_with_the_clients_result
    gate = Occupancy::Fake.new(occupied: %w[a c])
    result = gate.publish_if_occupied(%w[a b c a], "progress", '{"pct":1}', socket_id: "1.2")

    assert_equal Occupancy::PublishResult.new(published: %w[a c], skipped: %w[b]), result
    assert_equal [Occupancy::Fake::Publish.new(channels: %w[a c], event: "progress", data: '{"pct":1}', socket_id: "1.2")],
                 gate.published
    gate.publish_if_occupied("b", "progress", "{}")
    assert_equal 1, gate.published.size, "nothing is recorded when every channel is vacant"
    gate.clear_published
    assert_empty gate.published
  end

  def test_names_are_checked_like_the_client
    gate = Occupancy::Fake.new
    LocalChecksTest::BAD_CHANNELS.each do |name|
      assert_raises(Occupancy::InvalidArgumentError, name.inspect) { gate.occupied?(name) }
    end
    LocalChecksTest::GOOD_CHANNELS.each { |name| refute gate.occupied?(name) }
    assert_raises(Occupancy::InvalidArgumentError) { gate.publish_if_occupied([], "e", "{}") }
    assert_raises(Occupancy::InvalidArgumentError) { gate.publish_if_occupied(Array.new(101) { |i| "c#{i}" }, "e", "{}") }
    assert_raises(Occupancy::InvalidArgumentError) { gate.publish_if_occupied(["a"], "", "{}") }
    assert_raises(Occupancy::InvalidArgumentError) { gate.publish_if_occupied(["a"], "e" * 201, "{}") }
    assert_raises(Occupancy::InvalidArgumentError) { gate.occupy("bad name!") }
  end

  def test_simulated_outage_follows_the_failure_policy
    seen = []
    gate = Occupancy::Fake.new(on_error: ->(e) { seen << e }).fail!(Occupancy::Codes::UNAVAILABLE)
    assert gate.occupied?("vacant"), "fail-open answers true"
    assert_equal ["UNAVAILABLE"], seen.map(&:code_name)
    assert_raises(Occupancy::Error) { gate.publish_if_occupied(["a"], "e", "{}") }

    strict = Occupancy::Fake.new(fail_open: false).fail!
    assert_equal "UNAVAILABLE", assert_raises(Occupancy::Error) { strict.occupied?("a") }.code_name

    bug = Occupancy::Fake.new.fail!(Occupancy::Codes::UNAUTHENTICATED)
    assert_equal "UNAUTHENTICATED", assert_raises(Occupancy::Error) { bug.occupied?("a") }.code_name

    refute gate.recover!.occupied?("vacant")
  end

  def test_default_hook_is_the_rate_limited_warning
    logger, log = string_logger
    gate = Occupancy::Fake.new(logger: logger).fail!
    3.times { gate.occupied?("a") }
    assert_equal 1, log.string.lines.grep(/WARN/).size
  end

  def test_closed_fake_raises_the_closed_error
    gate = Occupancy::Fake.new
    gate.close
    gate.close
    assert gate.closed?
    assert_raises(Occupancy::ClosedError) { gate.occupied?("a") }
    assert_raises(Occupancy::ClosedError) { gate.publish_if_occupied(["a"], "e", "{}") }
  end

  def test_never_loads_grpc
    out, err, status = run_ruby(<<~RUBY)
      require "occupancy"
      gate = Occupancy::Fake.new(occupied: ["a"])
      gate.publish_if_occupied("a", "e", "{}")
      print defined?(GRPC::Core).inspect
    RUBY
    assert status.success?, err
    assert_equal "nil", out
  end
end

# The default hook's rate limit, with a clock the test moves.
class RateLimitedWarningTest < Minitest::Test
  def test_one_warning_per_interval_counting_the_swallowed_errors
    now = 1000.0
    logger, log = string_logger
    hook = Occupancy::RateLimitedWarning.new(logger: logger, clock: -> { now })
    error = Occupancy::Error.new(Occupancy::Codes::UNAVAILABLE, "down")

    hook.call(error)
    4.times { now += 5; hook.call(error) }
    assert_equal 1, log.string.lines.size
    assert_match(/1 error swallowed since the last warning/, log.string)

    now += 10.1 # 30.1 s after the first warning
    hook.call(error)
    lines = log.string.lines
    assert_equal 2, lines.size
    assert_match(/5 errors swallowed since the last warning .*latest: UNAVAILABLE: down/, lines.last)
  end

  def test_the_interval_is_30_seconds
    assert_equal 30.0, Occupancy::RateLimitedWarning::DEFAULT_INTERVAL
  end
end

# Which statuses fail open (clients/CONTRACT.md, "Failure policy").
class FailurePolicyTest < Minitest::Test
  def test_only_outages_fail_open
    outages = Occupancy::Codes::NAMES.select { |code, _| Occupancy::Error.new(code, "x").outage? }.values.sort
    assert_equal %w[DEADLINE_EXCEEDED RESOURCE_EXHAUSTED UNAVAILABLE], outages
    refute Occupancy::ClosedError.new.outage?
    refute Occupancy::InvalidArgumentError.new("x").outage?
    refute Occupancy::ForkError.new("x").outage?
  end

  def test_codes_match_grpcs
    require "grpc"
    GRPC::Core::StatusCodes.constants.each do |name|
      assert_equal GRPC::Core::StatusCodes.const_get(name), Occupancy::Codes.const_get(name), name
    end
  end
end
