# frozen_string_literal: true

require "test_helper"

# The five points every client says the same way (clients/CONTRACT.md,
# "Conformance"): the publish result's fields, the fake's vocabulary and
# failure policy, wait_synced, the closed error's type, ADDRESS_ENV.
class ConformanceTest < Minitest::Test
  PUBLISH_FIELDS = %i[published skipped deferred superseded store_unavailable].freeze

  def test_publish_result_fields_from_the_gate_and_the_fake
    channel = random_channel
    occupy(channel)
    real = client.publish_if_occupied([channel, random_channel], "e", "{}")
    assert_equal PUBLISH_FIELDS, real.members
    assert_equal [channel], real.published
    assert_equal [[], 0, false], [real.deferred, real.superseded, real.store_unavailable]

    fake = Occupancy::Fake.new(occupied: ["a"]).publish_if_occupied(%w[a b], "e", "{}")
    assert_equal Occupancy::PublishResult.new(published: ["a"], skipped: ["b"], deferred: [], superseded: 0,
                                              store_unavailable: false), fake
  end

  def test_fake_vocabulary_and_failure_policy
    seen = []
    down = Occupancy::Error.new(Occupancy::Codes::UNAVAILABLE, "down")
    gate = Occupancy::Fake.new(on_error: ->(e) { seen << e }).occupy("a", "b").vacate("b")
    assert gate.occupied?("a")
    refute gate.occupied?("b")
    gate.fail_with(down)
    assert gate.occupied?("b"), "UNAVAILABLE fails open"
    assert_equal [down], seen
    assert_occupancy_error(Occupancy::Codes::UNAVAILABLE) { gate.publish_if_occupied(["a"], "e", "{}") }
    strict = Occupancy::Fake.new(fail_open: false).fail_with(down)
    assert_occupancy_error(Occupancy::Codes::UNAVAILABLE) { strict.occupied?("a") }
    gate.fail_with(Occupancy::Error.new(Occupancy::Codes::INVALID_ARGUMENT, "bad"))
    assert_occupancy_error(Occupancy::Codes::INVALID_ARGUMENT) { gate.occupied?("a") }
    refute gate.recover.occupied?("b")
    assert gate.wait_synced(1)
    error = assert_raises(ArgumentError) { gate.fail_with(nil) }
    assert_match(/recover/, error.message)
  end

  def test_wait_synced
    cached = client(cached: true, fail_open: false)
    assert cached.wait_synced(5)
    assert cached.synced?
    refute client(env("OCCUPANCY_DEAD_ADDR"), cached: true, fail_open: false).wait_synced(0.3)
    assert_occupancy_error(Occupancy::Codes::FAILED_PRECONDITION) { client.wait_synced(1) }
    cached.close
    assert_raises(Occupancy::ClosedError) { cached.wait_synced(1) }
  end

  def test_the_closed_error_is_an_occupancy_error
    real = client
    real.close
    fake = Occupancy::Fake.new
    fake.close
    [-> { real.occupied?("a") }, -> { fake.occupied?("a") }].each do |call|
      error = assert_raises(Occupancy::ClosedError, &call)
      assert_kind_of Occupancy::Error, error
    end
  end

  def test_address_env
    assert_equal "OCCUPANCY_ADDR", Occupancy::Client::ADDRESS_ENV
    assert_equal Occupancy::Client::ADDRESS_ENV, Occupancy::Client::TARGET_ENV
  end
end
