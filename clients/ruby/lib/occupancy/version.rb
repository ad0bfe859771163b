# frozen_string_literal: true

module Occupancy
  # The gem's version, sent in the gRPC user agent so the gate's operators can
  # tell which client builds are talking to it.
  VERSION = "0.2.0"
end
