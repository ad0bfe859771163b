# frozen_string_literal: true

# Shared helpers for the suite. The suite runs against a real gate, Redis and
# Pusher stand-in started by the Rust harness (see clients/CONTRACT.md); it
# never mocks the gate. Tests that need a part of the harness that is not
# there fail (never skip) and name the missing variable.

require "json"
require "net/http"
require "openssl"
require "rbconfig"
require "securerandom"
require "socket"
require "stringio"
require "timeout"
require "uri"
require "minitest/autorun"
require "occupancy"

module GateHelpers
  REQUIRED_ENV = %w[
    OCCUPANCY_ADDR OCCUPANCY_WEBHOOK_URL OCCUPANCY_DEAD_ADDR PUSHER_STUB_URL
    TEST_PUSHER_APP_ID TEST_PUSHER_KEY TEST_PUSHER_SECRET
  ].freeze

  LIB = File.expand_path("../lib", __dir__)

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
    @proxies&.each(&:stop)
    super
  end

  # A variable of the harness; a missing one fails the test with its name.
  def env(name)
    value = ENV.fetch(name, "")
    flunk "#{name} is not set: this test needs the harness that provides it (clients/CONTRACT.md)" if value.empty?
    value
  end

  # A client that is closed after the test.
  def client(addr = env("OCCUPANCY_ADDR"), **opts)
    (@clients ||= []) << Occupancy::Client.new(addr, **opts)
    @clients.last
  end

  # A logger writing into a StringIO, and the StringIO.
  def string_logger
    io = StringIO.new
    [Logger.new(io), io]
  end

  # Suites share one gate, so each test uses its own channels.
  def random_channel(prefix = "ruby-test")
    "#{prefix}-#{SecureRandom.hex(8)}"
  end

  @@last_time_ms = Hash.new(0) # rubocop:disable Style/ClassVars -- one clock per process

  # Sends a Pusher webhook signed the way Pusher signs them; the gate answers
  # 200 only once the change is applied. time_ms grows strictly per channel.
  def send_webhook(name, channel)
    time_ms = [(Time.now.to_f * 1000).to_i, @@last_time_ms[channel] + 1].max
    @@last_time_ms[channel] = time_ms
    body = JSON.generate(time_ms: time_ms, events: [{ name: name, channel: channel }])
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

  # Makes the Pusher stand-in answer every trigger that includes +channel+
  # with +status+ (after +delay_ms+).
  def pusher_behaviour(channel, status:, body: "{}", delay_ms: 0)
    uri = URI.join(env("PUSHER_STUB_URL"), "/_stub/behaviour")
    payload = JSON.generate(channel: channel, status: status, body: body, delay_ms: delay_ms)
    response = Net::HTTP.post(uri, payload, "Content-Type" => "application/json")
    assert_match(/\A2\d\d\z/, response.code, "stub behaviour: #{response.code} #{response.body}")
  end

  # POST $OCCUPANCY_HARNESS_URL/restart-gate: answers once the gate listens again.
  def restart_gate
    uri = URI.join(env("OCCUPANCY_HARNESS_URL"), "/restart-gate")
    response = Net::HTTP.start(uri.host, uri.port, read_timeout: 60) { |http| http.post(uri.path, "") }
    assert_equal "200", response.code, "restart-gate: #{response.body}"
  end

  def assert_occupancy_error(code, klass = Occupancy::Error, &block)
    error = assert_raises(klass, &block)
    assert_equal Occupancy::Codes.name_of(code), error.code_name, "expected #{code}, got #{error.message}"
    refute_empty error.details
    error
  end

  # Polls until the block is truthy, or fails after +timeout+ seconds.
  def eventually(message, timeout: 5, interval: 0.05)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      result = yield
      return result if result
      flunk "#{message} (waited #{timeout}s)" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep interval
    end
  end

  def timed
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    yield
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  end

  # Runs +script+ in a fresh Ruby process (a process that has never used
  # gRPC, unlike this one), with this library on the load path; returns
  # [stdout, stderr, status].
  def run_ruby(script, timeout: 60, env: {})
    out_r, out_w = IO.pipe
    err_r, err_w = IO.pipe
    pid = Process.spawn(env, RbConfig.ruby, "-I", LIB, "-e", script, out: out_w, err: err_w)
    out_w.close
    err_w.close
    readers = [Thread.new { out_r.read }, Thread.new { err_r.read }]
    status = nil
    begin
      Timeout.timeout(timeout) { _, status = Process.wait2(pid) }
    rescue Timeout::Error
      Process.kill(:KILL, pid)
      Process.wait(pid)
      flunk "ruby subprocess hung for #{timeout}s: #{readers.map(&:value).join("\n")}"
    end
    [readers[0].value, readers[1].value, status]
  end

  # A plain TCP forwarder in front of the gate, to see what a client sends
  # and to take "the network" away and back.
  class TcpProxy
    attr_reader :port, :upstream_bytes

    def initialize(target, port: 0)
      @host, @target_port = target.split(":").then { |h, p| [h, Integer(p)] }
      @server = TCPServer.new("127.0.0.1", port)
      @port = @server.addr[1]
      @upstream_bytes = 0
      @mutex = Mutex.new
      @threads = []
      @sockets = []
      @acceptor = Thread.new { accept_loop }
    end

    def addr
      "127.0.0.1:#{@port}"
    end

    def bytes_from_client
      @mutex.synchronize { @upstream_bytes }
    end

    def stop
      @acceptor.kill.join
      @server.close unless @server.closed?
      @mutex.synchronize { @sockets.each { |s| s.close rescue nil } } # rubocop:disable Style/RescueModifier
      @threads.each { |t| t.kill.join }
    end

    private

    def accept_loop
      loop do
        downstream = @server.accept
        upstream = TCPSocket.new(@host, @target_port)
        @mutex.synchronize { @sockets.push(downstream, upstream) }
        @threads << Thread.new { pump(downstream, upstream, count: true) }
        @threads << Thread.new { pump(upstream, downstream, count: false) }
      end
    rescue IOError, SystemCallError
      nil
    end

    def pump(from, to, count:)
      loop do
        data = from.readpartial(65_536)
        @mutex.synchronize { @upstream_bytes += data.bytesize } if count
        to.write(data)
      end
    rescue IOError, SystemCallError
      [from, to].each { |s| s.close rescue nil } # rubocop:disable Style/RescueModifier
    end
  end

  def proxy(target, port: 0)
    (@proxies ||= []) << TcpProxy.new(target, port: port)
    @proxies.last
  end

  # A free local port (nothing listens on it afterwards).
  def free_port
    server = TCPServer.new("127.0.0.1", 0)
    server.addr[1]
  ensure
    server&.close
  end
end

module Minitest
  class Test
    include GateHelpers
  end
end
