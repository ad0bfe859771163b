# frozen_string_literal: true

module Occupancy
  # The gRPC status codes, as plain Integers with the same values as
  # +GRPC::Core::StatusCodes+ (fixed by the gRPC specification). They are
  # defined here so that loading this library, building a client and handling
  # its errors never loads the grpc gem: grpc is loaded on a client's first
  # call (see "Fork safety" in the README).
  module Codes
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    # Name of each code (+"UNAVAILABLE"+), as every gRPC tool prints it.
    NAMES = constants.to_h { |name| [const_get(name), name.to_s] }.freeze

    # The statuses that mean "the gate is down or overloaded", which a
    # fail-open check answers with +true+. Every other status is a
    # configuration or caller bug and is raised whatever the policy
    # (clients/CONTRACT.md, "Failure policy"). Transport errors (connection
    # refused or dropped) reach Ruby as +UNAVAILABLE+.
    OUTAGE = [UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED].freeze

    # @param code [Integer]
    # @return [String] the code's name, or +"CODE_<n>"+ for an unknown number.
    def self.name_of(code)
      NAMES.fetch(code) { "CODE_#{code}" }
    end
  end
end
