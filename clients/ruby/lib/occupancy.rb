# frozen_string_literal: true

# Ruby client for the occupancy gate: asks whether a Pusher Channels channel
# has subscribers before publishing to it, so encoders skip progress updates
# that nobody is watching. Start with {Occupancy::Client}.
module Occupancy
end

require "occupancy/version"
require "occupancy/error"
require "occupancy/client"
