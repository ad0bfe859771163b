# frozen_string_literal: true

require "grpc"

module Occupancy
  # The one error type this library raises for a failed call to the gate.
  #
  # Callers branch on {#code} (an Integer from +GRPC::Core::StatusCodes+)
  # rather than on exception classes, because the meaning of each status is
  # fixed by the proto (see +occupancy.proto+) and is the same in every
  # language's client:
  #
  # * +INVALID_ARGUMENT+ - a bad channel, event, data or socket id: a bug in
  #   the caller, never worth retrying.
  # * +UNAVAILABLE+ - the gate, its store or Pusher could not be reached:
  #   safe to retry.
  # * +DEADLINE_EXCEEDED+ - no answer in time; a publish may or may not have
  #   been delivered.
  # * +PERMISSION_DENIED+, +RESOURCE_EXHAUSTED+, +FAILED_PRECONDITION+ -
  #   Pusher refused the publish (disabled app, rate limit, bad credentials).
  #
  # The original gRPC exception, when there was one, is kept as +#cause+.
  class Error < StandardError
    # Status names by code, built from grpc's own constants so the names match
    # the ones every other gRPC tool prints.
    CODE_NAMES = GRPC::Core::StatusCodes.constants.each_with_object({}) do |name, names|
      names[GRPC::Core::StatusCodes.const_get(name)] = name.to_s
    end.freeze
    private_constant :CODE_NAMES

    # @return [Integer] the gRPC status code, a +GRPC::Core::StatusCodes+ value.
    attr_reader :code

    # @return [String] the server's (or gRPC's) explanation, naming the cause.
    attr_reader :details

    # @param code [Integer] a +GRPC::Core::StatusCodes+ value
    # @param details [String] the status message
    def initialize(code, details)
      @code = code
      @details = details.to_s
      super("#{code_name}: #{@details}")
    end

    # The status as its conventional upper-case name (e.g. +"UNAVAILABLE"+), for
    # logs and metrics labels where the bare number would be unreadable.
    #
    # @return [String]
    def code_name
      CODE_NAMES.fetch(code, "CODE_#{code}")
    end

    # Whether the failure was in the caller's arguments. These always raise,
    # even for a client that fails open, because retrying or ignoring them
    # would only hide the bug.
    #
    # @return [Boolean]
    def invalid_argument?
      code == GRPC::Core::StatusCodes::INVALID_ARGUMENT
    end
  end
end
