# frozen_string_literal: true

require "occupancy/codes"

module Occupancy
  # The error this library raises for a failed call to the gate, and passes to
  # the +on_error+ hook when a fail-open check swallows one.
  #
  # Callers branch on {#code} (an Integer from {Occupancy::Codes}, equal to
  # +GRPC::Core::StatusCodes+) or on the predicates below. The meaning of each
  # status is fixed by the proto and is the same in every language's client:
  #
  # * +INVALID_ARGUMENT+ - a bad channel, event, data or app id: a bug in the
  #   caller. Malformed names are caught locally, before any call
  #   ({InvalidArgumentError}).
  # * +UNAVAILABLE+ - the gate, its store or Pusher could not be reached (also
  #   connection refused or dropped): safe to retry.
  # * +DEADLINE_EXCEEDED+ - no answer in time; a publish may or may not have
  #   been delivered.
  # * +RESOURCE_EXHAUSTED+ - rate limited (Pusher answered 429).
  # * +PERMISSION_DENIED+, +FAILED_PRECONDITION+ - Pusher refused the publish
  #   (app disabled or over quota, bad credentials).
  # * +UNAUTHENTICATED+ - the gate wants a token and got none or a wrong one.
  # * +NOT_FOUND+ - +app_id+ names no app the gate serves.
  #
  # The original gRPC exception, when there was one, is kept as +#cause+.
  class Error < StandardError
    # @return [Integer] the gRPC status code, an {Occupancy::Codes} value.
    attr_reader :code

    # @return [String] the server's (or gRPC's) explanation, naming the cause.
    attr_reader :details

    # @param code [Integer] an {Occupancy::Codes} value
    # @param details [String] the status message
    def initialize(code, details)
      @code = code
      @details = details.to_s
      super("#{code_name}: #{@details}")
    end

    # The status as its conventional upper-case name (e.g. +"UNAVAILABLE"+).
    #
    # @return [String]
    def code_name
      Codes.name_of(code)
    end

    # Whether the failure was in the caller's arguments.
    #
    # @return [Boolean]
    def invalid_argument?
      code == Codes::INVALID_ARGUMENT
    end

    # Whether the failure means the gate is down or overloaded
    # (+UNAVAILABLE+, +DEADLINE_EXCEEDED+, +RESOURCE_EXHAUSTED+, or a transport
    # error): the only failures a fail-open check answers with +true+.
    #
    # @return [Boolean]
    def outage?
      Codes::OUTAGE.include?(code)
    end
  end

  # A channel name, event name or channel list that the gate would reject,
  # caught locally before any call (so it raises even while the gate is down).
  # Its code is +INVALID_ARGUMENT+.
  class InvalidArgumentError < Error
    # @param details [String] what is wrong, naming the argument
    def initialize(details)
      super(Codes::INVALID_ARGUMENT, details)
    end
  end

  # Raised by every call on a client after {Client#close} (a bug in the
  # caller, so never swallowed by fail-open). Its code is +CANCELLED+.
  class ClosedError < Error
    def initialize(details = "the occupancy client is closed")
      super(Codes::CANCELLED, details)
    end
  end

  # Raised in a forked child whose gRPC runtime cannot be used, because the
  # parent already used gRPC and the grpc gem cannot recover from the fork
  # (grpc before 1.57, or fork support not enabled). This is a configuration
  # bug, not an outage: it is raised whatever the failure policy, never
  # answered with +true+. Its code is +FAILED_PRECONDITION+; the message names
  # the cause and the fix.
  class ForkError < Error
    def initialize(details)
      super(Codes::FAILED_PRECONDITION, details)
    end
  end
end
