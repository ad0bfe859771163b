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
    Optional cached mode answers from a local copy kept by a stream.
  DESC
  spec.authors = ["occupancy"]
  spec.homepage = "https://github.com/occupancy/occupancy"
  spec.metadata = {
    "source_code_uri" => "https://github.com/occupancy/occupancy/tree/main/clients/ruby",
    "documentation_uri" => "https://github.com/occupancy/occupancy/blob/main/clients/ruby/README.md"
  }
  # MIT OR Apache-2.0, at the user's choice; the texts are LICENSE-MIT and
  # LICENSE-APACHE (copies of the repository root's, checked by the suite).
  # RubyGems has no SPDX expressions (`gem build` calls "MIT OR Apache-2.0"
  # invalid); a list of licences is its way of saying "either".
  spec.licenses = ["MIT", "Apache-2.0"]
  spec.required_ruby_version = ">= 3.0"

  spec.files = Dir.glob("lib/**/*.rb", base: __dir__) + %w[README.md LICENSE-MIT LICENSE-APACHE]
  spec.require_paths = ["lib"]

  # The stubs use the serialized-descriptor form, which loads with both
  # google-protobuf majors (3.21 on Debian bookworm, 4.x from rubygems.org).
  # grpc 1.51-1.5x needs protobuf 3.x and later grpc allows 4.x, so Bundler
  # picks a matching pair. grpc >= 1.57 also makes forking after a call safe
  # (see the README's "Fork safety").
  spec.add_dependency "google-protobuf", ">= 3.21", "< 5"
  spec.add_dependency "grpc", ">= 1.51", "< 2"

  spec.add_development_dependency "minitest", "~> 5.15"
  spec.add_development_dependency "rake", "~> 13.0"
end
