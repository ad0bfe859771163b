# frozen_string_literal: true

require "grpc"
require "occupancy/error"
require "occupancy/version"
require "occupancy/v1/occupancy_services_pb"

module Occupancy
  # What one {Client#publish_if_occupied} did, so the caller can tell which
  # channels really got the event (e.g. to count or log skipped work).
  #
  # @!attribute [r] published
  #   @return [Array<String>] channels the event was triggered on (occupied
  #     ones), in request order.
  # @!attribute [r] skipped
  #   @return [Array<String>] channels that were vacant and got nothing, in
  #     request order.
  PublishResult = Struct.new(:published, :skipped, keyword_init: true)

  # A connection to the occupancy gate, the service that knows which Pusher
  # channels have subscribers, so an encoder can skip publishing progress
  # nobody is watching.
  #
  # One client holds one gRPC channel, opened lazily on the first call and
  # reused by every call after it; create one per process (it is safe to share
  # between threads) and {#close} it at shutdown.
  #
  # Failure policy of {#occupied?} (chosen with +on_error:+):
  #
  # * +:open+ (default): when the gate cannot be reached or answers an error,
  #   answer +true+ ("occupied"). An encoder that publishes by itself after a
  #   +true+ then never drops a live update because the gate is down; the cost
  #   is a few publishes nobody sees. The swallowed error is passed to
  #   +error_handler+ so it is not silent.
  # * +:raise+: raise {Occupancy::Error} instead.
  #
  # In both policies an +INVALID_ARGUMENT+ answer (a malformed channel name) is
  # raised, because it is a bug in the caller that failing open would hide.
  # Validation happens in the gate, so while the gate is unreachable a
  # malformed name cannot be recognised and fails open like any other call.
  #
  # {#publish_if_occupied} always raises on failure: nothing was published.
  #
  # @example
  #   gate = Occupancy::Client.new("occupancy:50051")
  #   if gate.occupied?("job-42")
  #     result = gate.publish_if_occupied(["job-42"], "progress", '{"pct":40}')
  #     result.published # => ["job-42"]
  #   end
  #   gate.close
  class Client
    # Seconds allowed for an occupancy check: short, because it sits in front
    # of every progress update and a slow gate must not stall the encoder.
    DEFAULT_TIMEOUT = 1.0

    # Seconds allowed for a publish: longer than the gate's own Pusher HTTP
    # timeout, so the gate reports Pusher's failure instead of the client
    # giving up first and leaving the outcome unknown.
    DEFAULT_PUBLISH_TIMEOUT = 5.0

    # The accepted values of +on_error:+.
    FAILURE_POLICIES = %i[open raise].freeze

    # What a fail-open client does with a swallowed error when the caller gave
    # no +error_handler+: a warning on stderr (silenced, like every Ruby
    # warning, when +$VERBOSE+ is nil), so an outage of the gate shows up in
    # the encoder's logs.
    DEFAULT_ERROR_HANDLER = lambda do |error|
      Kernel.warn("occupancy: gate check failed, answering occupied (fail open): #{error.message}")
    end

    # @return [String] the gate's +host:port+.
    attr_reader :target
    # @return [Float] seconds allowed for {#occupied?}.
    attr_reader :timeout
    # @return [Float] seconds allowed for {#publish_if_occupied}.
    attr_reader :publish_timeout
    # @return [Symbol] the failure policy of {#occupied?}, +:open+ or +:raise+.
    attr_reader :on_error

    # @param target [String] the gate's address, +host:port+ (any gRPC target
    #   string works, e.g. +dns:///occupancy:50051+).
    # @param timeout [Numeric] seconds allowed for {#occupied?}.
    # @param publish_timeout [Numeric] seconds allowed for {#publish_if_occupied}.
    # @param on_error [Symbol] +:open+ to answer +true+ when the check fails,
    #   +:raise+ to raise {Occupancy::Error}; see the class docs.
    # @param error_handler [#call, nil] called with each {Occupancy::Error}
    #   swallowed by failing open (e.g. to log it or count it); +nil+ to
    #   ignore them. An exception raised by the handler is reported with
    #   +warn+ and otherwise ignored, so that observing an error never turns
    #   into losing the answer.
    # @param credentials [Symbol, GRPC::Core::ChannelCredentials]
    #   +:this_channel_is_insecure+ (plaintext, the default) or TLS
    #   credentials such as +GRPC::Core::ChannelCredentials.new+.
    # @param channel_args [Hash] extra gRPC channel arguments (keepalive,
    #   message sizes...), for operators who need to tune the connection.
    # @raise [ArgumentError] for an invalid option.
    def initialize(target,
                   timeout: DEFAULT_TIMEOUT,
                   publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
                   on_error: :open,
                   error_handler: DEFAULT_ERROR_HANDLER,
                   credentials: :this_channel_is_insecure,
                   channel_args: {})
      unless target.is_a?(String) && !target.empty?
        raise ArgumentError, "target must be a non-empty \"host:port\" string, got #{target.inspect}"
      end
      unless FAILURE_POLICIES.include?(on_error)
        raise ArgumentError, "on_error must be one of #{FAILURE_POLICIES.inspect}, got #{on_error.inspect}"
      end
      unless error_handler.nil? || error_handler.respond_to?(:call)
        raise ArgumentError, "error_handler must respond to #call or be nil"
      end

      @target = target
      @timeout = seconds(:timeout, timeout)
      @publish_timeout = seconds(:publish_timeout, publish_timeout)
      @on_error = on_error
      @error_handler = error_handler
      @closed = false

      args = channel_args.to_h.transform_keys(&:to_s)
      args["grpc.primary_user_agent"] = [args["grpc.primary_user_agent"], "occupancy-ruby/#{VERSION}"].compact.join(" ")
      # The channel is built here, once, and handed to the stub so that
      # #close can shut it down (a plain stub offers no way to).
      @channel = GRPC::Core::Channel.new(target, args, credentials)
      @stub = ::Occupancy::V1::Occupancy::Stub.new(target, credentials, channel_override: @channel)
    end

    # Whether anyone is subscribed to +channel+ right now, as last reported to
    # the gate by Pusher's webhooks.
    #
    # @param channel [String] a Pusher channel name (1 to 164 characters of
    #   +A-Z a-z 0-9 _ - = @ , . ;+, prefixes such as +private-+ included).
    # @return [Boolean] +true+ also when the check failed and the client fails
    #   open.
    # @raise [Occupancy::Error] with code +INVALID_ARGUMENT+ for a malformed
    #   channel name (whatever the failure policy); with the failure's code
    #   when +on_error: :raise+; with +CANCELLED+ after {#close}.
    def occupied?(channel)
      ensure_open!
      request = build_request { ::Occupancy::V1::IsOccupiedRequest.new(channel: channel) }
      invoke(:is_occupied, request, @timeout).occupied
    rescue Error => e
      raise if @on_error == :raise || e.invalid_argument? || @closed

      report(e)
      true
    end

    # Triggers +event+ on those of +channels+ that are occupied, in a single
    # Pusher API call made by the gate, and makes no call at all when none is.
    #
    # @param channels [Array<String>, String] 1 to 100 channel names (a single
    #   name is accepted too); duplicates count as one.
    # @param event [String] the Pusher event name, 1 to 200 characters.
    # @param data [String] the payload, sent verbatim as the event's data
    #   (usually JSON you encoded), at most 10240 bytes.
    # @param socket_id [String, nil] a Pusher socket id (+"123.456"+) to
    #   exclude from receiving the event, e.g. the browser that caused it.
    # @return [PublishResult] which channels got the event and which were
    #   skipped as vacant.
    # @raise [Occupancy::Error] on any failure, whatever the failure policy:
    #   +INVALID_ARGUMENT+ for bad arguments, +UNAVAILABLE+ (safe to retry),
    #   +DEADLINE_EXCEEDED+ (delivery unknown), or Pusher's refusal.
    def publish_if_occupied(channels, event, data, socket_id: nil)
      ensure_open!
      channels = [channels] if channels.is_a?(String)
      request = build_request do
        ::Occupancy::V1::PublishIfOccupiedRequest.new(
          channels: Array(channels),
          event: event,
          data: data,
          socket_id: socket_id.to_s
        )
      end
      response = invoke(:publish_if_occupied, request, @publish_timeout)
      PublishResult.new(published: response.published.to_a, skipped: response.skipped.to_a)
    end

    # Shuts the gRPC channel down. Calls made afterwards raise
    # {Occupancy::Error} with code +CANCELLED+ (whatever the failure policy,
    # since using a closed client is a bug). Safe to call more than once.
    #
    # @return [void]
    def close
      return if @closed

      @closed = true
      @channel.close
      nil
    end

    # @return [Boolean] whether {#close} was called.
    def closed?
      @closed
    end

    private

    def seconds(name, value)
      unless value.is_a?(Numeric) && value.to_f.finite? && value.positive?
        raise ArgumentError, "#{name} must be a positive number of seconds, got #{value.inspect}"
      end

      value.to_f
    end

    def ensure_open!
      raise Error.new(GRPC::Core::StatusCodes::CANCELLED, "the occupancy client is closed") if @closed
    end

    # Builds a request, turning protobuf's complaints about argument types
    # (an Integer channel, bytes that are not UTF-8...) into the same
    # INVALID_ARGUMENT error the gate gives for a bad value.
    def build_request
      yield
    rescue TypeError, ArgumentError, RangeError, EncodingError => e
      raise Error.new(GRPC::Core::StatusCodes::INVALID_ARGUMENT, e.message)
    end

    def invoke(method, request, timeout)
      @stub.public_send(method, request, deadline: Time.now + timeout)
    rescue GRPC::BadStatus => e
      raise Error.new(e.code, e.details)
    rescue GRPC::Core::CallError => e
      raise Error.new(GRPC::Core::StatusCodes::INTERNAL, e.message)
    rescue RuntimeError => e
      # grpc raises a bare RuntimeError ("closed!") for a call racing #close.
      raise unless @closed

      raise Error.new(GRPC::Core::StatusCodes::CANCELLED, "the occupancy client is closed")
    end

    def report(error)
      @error_handler&.call(error)
    rescue StandardError => e
      Kernel.warn("occupancy: error_handler raised #{e.class}: #{e.message}")
    end
  end
end
