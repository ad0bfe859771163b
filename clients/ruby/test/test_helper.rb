# frozen_string_literal: true

# Shared helpers for the suite. The suite runs against a real gate, Redis and
# Pusher stand-in started by the Rust harness (see clients/CONTRACT.md); it
# never mocks the gate.

require "json"
require "net/http"
require "openssl"
require "securerandom"
require "socket"
require "uri"
require "minitest/autorun"
require "occupancy"

module GateHelpers
  REQUIRED_ENV = %w[
    OCCUPANCY_ADDR OCCUPANCY_WEBHOOK_URL OCCUPANCY_DEAD_ADDR PUSHER_STUB_URL
    TEST_PUSHER_APP_ID TEST_PUSHER_KEY TEST_PUSHER_SECRET
  ].freeze

  # Fails (never skips) the running test when the harness did not provide the
  # environment, so a suite run by hand cannot pass without testing anything.
  def setup
    super
    missing = REQUIRED_ENV.reject { |name| ENV[name] && !ENV[name].empty? }
    return if missing.empty?

    flunk "missing environment variables #{missing.join(', ')}: run this suite via " \
          "`cargo test --test clients -- ruby` from the repository root"
  end

  def teardown
    @clients&.each(&:close)
    super
  end

  def env(name)
    ENV.fetch(name)
  end

  # A client that is closed after the test.
  def client(addr = env("OCCUPANCY_ADDR"), **opts)
    (@clients ||= []) << Occupancy::Client.new(addr, **opts)
    @clients.last
  end

  # Suites share one gate, so each test uses its own channels.
  def random_channel(prefix = "ruby-test")
    "#{prefix}-#{SecureRandom.hex(8)}"
  end

  # Sends a Pusher webhook signed the way Pusher signs them; the gate answers
  # 200 only once the change is applied.
  def send_webhook(name, channel)
    body = JSON.generate(
      time_ms: (Time.now.to_f * 1000).to_i,
      events: [{ name: name, channel: channel }]
    )
    signature = OpenSSL::HMAC.hexdigest("SHA256", env("TEST_PUSHER_SECRET"), body)
    uri = URI(env("OCCUPANCY_WEBHOOK_URL"))
    response = Net::HTTP.post(uri, body,
                              "Content-Type" => "application/json",
                              "X-Pusher-Key" => env("TEST_PUSHER_KEY"),
                              "X-Pusher-Signature" => signature)
    assert_equal "200", response.code, "webhook #{name} #{channel}: #{response.body}"
  end

  def occupy(channel)
    send_webhook("channel_occupied", channel)
  end

  def vacate(channel)
    send_webhook("channel_vacated", channel)
  end

  # The calls that reached the Pusher stand-in and mention any of +channels+.
  def pusher_calls_for(*channels)
    uri = URI.join(env("PUSHER_STUB_URL"), "/_stub/calls")
    response = Net::HTTP.get_response(uri)
    assert_equal "200", response.code, "stub calls: #{response.body}"
    JSON.parse(response.body).fetch("calls").select do |call|
      call_channels = call.dig("body", "channels") || []
      (call_channels & channels).any?
    end
  end

  def assert_occupancy_error(code, &block)
    error = assert_raises(Occupancy::Error, &block)
    assert_equal code, error.code, "expected #{code}, got #{error.message}"
    refute_empty error.details
    error
  end
end

module Minitest
  class Test
    include GateHelpers
  end
end
