# frozen_string_literal: true

require_relative "lib/occupancy/version"

Gem::Specification.new do |spec|
  spec.name = "occupancy-client"
  spec.version = Occupancy::VERSION
  spec.summary = "Client for the occupancy gate: publish to Pusher Channels only when someone is watching."
  spec.description = <<~DESC
    Asks the occupancy gRPC service whether a Pusher Channels channel has
    subscribers, and publishes events through it only to occupied channels.
    Fails open by default, so an unreachable gate never drops a live update.
  DESC
  spec.authors = ["occupancy"]
  spec.license = "Apache-2.0"
  spec.required_ruby_version = ">= 3.0"

  spec.files = Dir["lib/**/*.rb"] + ["README.md"]
  spec.require_paths = ["lib"]

  # The checked-in stubs use protobuf's descriptor DSL, which google-protobuf
  # 4.x no longer has; regenerate them before allowing 4.x.
  spec.add_dependency "google-protobuf", "~> 3.21"
  spec.add_dependency "grpc", ">= 1.51", "< 2"

  spec.add_development_dependency "grpc-tools", "= 1.51.1"
  spec.add_development_dependency "minitest", "~> 5.15"
  spec.add_development_dependency "rake", "~> 13.0"
end
