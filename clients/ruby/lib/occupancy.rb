# frozen_string_literal: true

# Ruby client for the occupancy gate: asks whether a Pusher Channels channel
# has subscribers before publishing to it, so encoders skip progress updates
# that nobody is watching. Start with {Occupancy::Client}; {Occupancy::Fake}
# stands in for it in unit tests.
#
# Requiring this file does not load the grpc gem: a client loads it on its
# first call (see "Fork safety" in the README).
module Occupancy
end

require "occupancy/version"
require "occupancy/codes"
require "occupancy/error"
require "occupancy/names"
require "occupancy/client"
require "occupancy/fake"
