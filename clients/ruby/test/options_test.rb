# frozen_string_literal: true

require "test_helper"

# Construction: target, validation, and that nothing touches gRPC yet.
class ConstructionTest < Minitest::Test
  def with_env(name, value)
    old = ENV.fetch(name, nil)
    value.nil? ? ENV.delete(name) : ENV[name] = value
    yield
  ensure
    old.nil? ? ENV.delete(name) : ENV[name] = old
  end

  def test_target_comes_from_occupancy_addr_when_none_is_given
    channel = random_channel
    occupy(channel)
    gate = Occupancy::Client.new
    (@clients ||= []) << gate

    assert_equal env("OCCUPANCY_ADDR"), gate.target
    assert gate.occupied?(channel)
  end

  def test_no_target_and_no_occupancy_addr_is_a_clear_error
    with_env("OCCUPANCY_ADDR", nil) do
      error = assert_raises(ArgumentError) { Occupancy::Client.new }
      assert_match(/pass a target .* or set OCCUPANCY_ADDR/, error.message)
    end
  end

  def test_rejects_bad_options
    addr = env("OCCUPANCY_ADDR")
    [
      { fail_open: :yes }, { check_timeout: 0 }, { publish_timeout: "5" }, { on_error: "log" },
      { on_error: :raise }, { keepalive: -1 }, { metadata: { "Bad Key" => "v" } }, { metadata: { "k" => 1 } },
      { token: "" }, { ca_file: "/nonexistent/ca.pem" }, { app_id: 1 }, { cached: "yes" }
    ].each do |opts|
      assert_raises(ArgumentError, opts.inspect) { Occupancy::Client.new(addr, **opts) }
    end
    assert_raises(ArgumentError) { Occupancy::Client.new("") }
  end

  def test_channel_args_override_the_defaults
    gate = Occupancy::Client.new(env("OCCUPANCY_ADDR"), keepalive: 10,
                                 channel_args: { "grpc.max_reconnect_backoff_ms" => 5000, :"grpc.keepalive_time_ms" => 7000 })
    assert_equal 5000, gate.channel_args["grpc.max_reconnect_backoff_ms"]
    assert_equal 7000, gate.channel_args["grpc.keepalive_time_ms"]
    assert_equal false, gate.occupied?(random_channel)
  ensure
    gate&.close
  end

  def test_on_error_symbol_from_0_1_explains_the_new_option
    error = assert_raises(ArgumentError) { Occupancy::Client.new(env("OCCUPANCY_ADDR"), on_error: :open) }
    assert_match(/fail_open: true or false/, error.message)
  end

  # Requiring the library and constructing clients (every option) loads
  # neither grpc nor protobuf, and opens no connection; the first call does.
  def test_construction_touches_neither_grpc_nor_the_network
    listener = TCPServer.new("127.0.0.1", 0)
    script = <<~RUBY
      require "occupancy"
      gate = Occupancy::Client.new("127.0.0.1:#{listener.addr[1]}", token: "t", metadata: { "x-a" => "b" },
                                   keepalive: 10, cached: true, check_timeout: 0.3)
      Occupancy::Client.new("localhost:1", tls: true)
      puts "loaded: " + $LOADED_FEATURES.grep(%r{/grpc(_c)?\\.so|/grpc\\.rb|google/protobuf}).inspect
      $stdout.flush
      sleep 0.5
      gate.occupied?("x") # fails open after the deadline: the listener never answers
      puts "after call: grpc loaded=" + defined?(GRPC::Core::Channel).inspect
    RUBY
    accepted_before = nil
    watcher = Thread.new do
      sleep 0.4
      accepted_before = begin
        listener.accept_nonblock
      rescue IO::WaitReadable
        :none
      end
    end
    out, err, status = run_ruby(script)
    watcher.join

    assert status.success?, err
    assert_includes out, "loaded: []"
    assert_includes out, 'after call: grpc loaded="constant"'
    assert_equal :none, accepted_before, "no connection before the first call"
  ensure
    listener&.close
  end
end

# Call options against the secure gate: TLS with a custom CA, tokens,
# metadata.
class SecureGateTest < Minitest::Test
  Codes = Occupancy::Codes

  def secure(**opts)
    client(env("OCCUPANCY_SECURE_ADDR"), ca_file: env("OCCUPANCY_TLS_CA"), fail_open: false, **opts)
  end

  def test_tls_with_ca_file_and_token
    channel = random_channel
    occupy(channel)
    gate = secure(token: env("OCCUPANCY_TEST_TOKEN"))

    assert gate.occupied?(channel)
    result = gate.publish_if_occupied([channel], "progress", "{}")
    assert_equal [channel], result.published
  end

  def test_the_old_token_still_works_during_rotation
    channel = random_channel
    occupy(channel)
    assert secure(token: env("OCCUPANCY_TEST_TOKEN_OLD")).occupied?(channel)
  end

  def test_missing_or_wrong_token_raises_unauthenticated_even_when_failing_open
    seen = []
    [nil, "wrong-token"].each do |token|
      opts = token ? { token: token } : {}
      gate = client(env("OCCUPANCY_SECURE_ADDR"), ca_file: env("OCCUPANCY_TLS_CA"), on_error: ->(e) { seen << e }, **opts)
      assert_occupancy_error(Codes::UNAUTHENTICATED) { gate.occupied?(random_channel) }
      assert_occupancy_error(Codes::UNAUTHENTICATED) { gate.publish_if_occupied([random_channel], "e", "{}") }
    end
    assert_empty seen, "a configuration bug is raised, not swallowed"
  end

  def test_metadata_is_sent_on_every_call
    channel = random_channel
    occupy(channel)
    # The token given as plain metadata: the gate accepts the call only if
    # the metadata reached it.
    gate = secure(metadata: { "authorization" => "Bearer #{env('OCCUPANCY_TEST_TOKEN')}", "x-encoder" => "ruby-suite" })

    assert gate.occupied?(channel)
    assert_equal [channel], gate.publish_if_occupied([channel], "e", "{}").published
  end

  def test_tls_is_verified_against_the_given_ca_only
    # The system CAs do not know the harness's CA: the handshake fails.
    gate = client(env("OCCUPANCY_SECURE_ADDR"), tls: true, token: env("OCCUPANCY_TEST_TOKEN"), fail_open: false)
    error = assert_raises(Occupancy::Error) { gate.occupied?(random_channel) }
    assert_equal "UNAVAILABLE", error.code_name, error.message
  end

  def test_plaintext_to_the_tls_gate_fails_as_an_outage
    gate = client(env("OCCUPANCY_SECURE_ADDR"), token: env("OCCUPANCY_TEST_TOKEN"), fail_open: false)
    error = assert_raises(Occupancy::Error) { gate.occupied?(random_channel) }
    assert error.outage?, error.message
  end
end

# Keepalive and the reconnect backoff, seen through a TCP forwarder in front
# of the real gate.
class ConnectionTest < Minitest::Test
  def test_keepalive_pings_an_idle_connection
    with_ping = proxy(env("OCCUPANCY_ADDR"))
    without = proxy(env("OCCUPANCY_ADDR"))
    pinging = client(with_ping.addr, keepalive: 0.5)
    quiet = client(without.addr)
    assert_equal 500, pinging.channel_args["grpc.keepalive_time_ms"]
    refute quiet.channel_args.key?("grpc.keepalive_time_ms"), "keepalive is off by default"

    [pinging, quiet].each { |gate| gate.occupied?(random_channel) }
    sleep 0.3
    before = [with_ping.bytes_from_client, without.bytes_from_client]
    sleep 2.5
    after = [with_ping.bytes_from_client, without.bytes_from_client]

    assert_operator after[0] - before[0], :>=, 17, "keepalive sent HTTP/2 PINGs on the idle connection"
    assert_equal 0, after[1] - before[1], "without keepalive an idle connection stays silent"
    assert pinging.occupied?(random_channel) == false, "the connection still works"
  end

  # gRPC's own backoff reaches ~6 s after 10 s of failures (1 s x 1.6^n); the
  # client caps it at 2 s, so the gate is reached soon after it is back.
  def test_reconnect_backoff_is_capped_at_two_seconds
    port = free_port
    gate = client("127.0.0.1:#{port}", fail_open: false, check_timeout: 0.5)
    assert_equal 2000, gate.channel_args["grpc.max_reconnect_backoff_ms"]

    down_until = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    while Process.clock_gettime(Process::CLOCK_MONOTONIC) < down_until
      assert_raises(Occupancy::Error) { gate.occupied?(random_channel) }
      sleep 0.2
    end
    proxy(env("OCCUPANCY_ADDR"), port: port)

    elapsed = timed do
      eventually("the client reached the gate again", timeout: 10, interval: 0.05) do
        gate.occupied?(random_channel) == false
      rescue Occupancy::Error
        false
      end
    end
    # Uncapped, the next attempt would come ~5-6 s after the gate is back.
    assert_operator elapsed, :<, 3.5, "reconnected within the 2 s cap (plus jitter)"
  end

  def test_a_restarted_gate_is_reached_again_within_seconds
    channel = random_channel
    occupy(channel)
    gate = client(fail_open: false)
    assert gate.occupied?(channel)

    restart_gate

    elapsed = timed do
      eventually("the client reached the restarted gate", timeout: 10, interval: 0.05) do
        gate.occupied?(channel)
      rescue Occupancy::Error
        false
      end
    end
    assert_operator elapsed, :<, 5.0, "back within seconds"
  end
end

# What the encoder sees when Pusher refuses a publish.
class PusherErrorsTest < Minitest::Test
  {
    403 => "PERMISSION_DENIED",
    429 => "RESOURCE_EXHAUSTED",
    500 => "UNAVAILABLE",
    503 => "UNAVAILABLE"
  }.each do |status, code|
    define_method(:"test_pusher_#{status}_is_#{code.downcase}") do
      channel = random_channel
      occupy(channel)
      pusher_behaviour(channel, status: status, body: '{"error":"from the suite"}')

      [true, false].each do |fail_open|
        error = assert_raises(Occupancy::Error) do
          client(fail_open: fail_open).publish_if_occupied([channel], "progress", "{}")
        end
        assert_equal code, error.code_name, error.message
      end
      assert client.occupied?(channel), "checks are unaffected"
    end
  end

  def test_pusher_timeout_is_deadline_exceeded
    channel = random_channel
    occupy(channel)
    pusher_behaviour(channel, status: 200, delay_ms: 4000)

    error = assert_raises(Occupancy::Error) { client.publish_if_occupied([channel], "progress", "{}") }
    assert_equal "DEADLINE_EXCEEDED", error.code_name, error.message
  end

  def test_other_channels_are_unaffected
    refused = random_channel
    fine = random_channel
    [refused, fine].each { |c| occupy(c) }
    pusher_behaviour(refused, status: 403)

    assert_equal [fine], client.publish_if_occupied([fine], "progress", "{}").published
  end
end
