# frozen_string_literal: true

require "test_helper"

# What the gem promises about itself: licence, files, and stubs that load with
# both google-protobuf majors.
class PackagingTest < Minitest::Test
  ROOT = File.expand_path("..", __dir__)

  def spec
    @spec ||= Gem::Specification.load(File.join(ROOT, "occupancy-client.gemspec"))
  end

  def test_licence_is_mit_or_apache_and_the_texts_ship
    assert_equal ["MIT", "Apache-2.0"], spec.licenses
    %w[LICENSE-MIT LICENSE-APACHE].each do |name|
      assert_includes spec.files, name
      assert_equal File.read(File.join(ROOT, "../..", name)), File.read(File.join(ROOT, name)),
                   "#{name} is a copy of the repository root's"
    end
  end

  def test_dependencies_allow_both_protobuf_majors
    deps = spec.runtime_dependencies.to_h { |d| [d.name, d.requirement] }
    %w[3.21.12 4.29.3 4.31.1].each { |v| assert deps["google-protobuf"].satisfied_by?(Gem::Version.new(v)), v }
    refute deps["google-protobuf"].satisfied_by?(Gem::Version.new("5.0.0"))
    %w[1.51.1 1.57.0 1.70.1].each { |v| assert deps["grpc"].satisfied_by?(Gem::Version.new(v)), v }
  end

  def test_every_library_file_ships
    Dir.chdir(ROOT) { assert_empty Dir["lib/**/*.rb"] - spec.files }
  end

  # The stubs use the serialized-descriptor form that protoc >= 3.22 emits for
  # google-protobuf 4.x; google-protobuf 3.21 (here) loads it too.
  def test_stubs_are_the_serialized_descriptor_form_and_load_here
    source = File.read(File.join(ROOT, "lib/occupancy/v1/occupancy_pb.rb"))
    assert_includes source, "pool.add_serialized_file(descriptor_data)"
    refute_includes source, "generated_pool.build", "the 3.x-only DSL is gone"

    out, err, status = run_ruby(<<~RUBY)
      require "google/protobuf"
      require "occupancy/v1/occupancy_pb"
      r = Occupancy::V1::PublishIfOccupiedRequest.new(channels: ["a"], app_id: "x", coalesce_ms: 5)
      back = Occupancy::V1::PublishIfOccupiedRequest.decode(Occupancy::V1::PublishIfOccupiedRequest.encode(r))
      kind = Occupancy::V1::WatchOccupancyResponse.new(kind: :KIND_SYNCED).kind
      print [Gem.loaded_specs["google-protobuf"].version.to_s, back == r, kind].inspect
    RUBY
    assert status.success?, err
    version, equal, kind = eval(out) # rubocop:disable Security/Eval -- our own subprocess
    assert equal
    assert_equal :KIND_SYNCED, kind
    assert_operator Gem::Version.new(version), :>=, Gem::Version.new("3.21")
  end

  def test_readme_install_line_uses_the_repository_url_with_a_glob
    readme = File.read(File.join(ROOT, "README.md"))
    assert_match(%r{gem "occupancy-client", git: "https://github.com/occupancy/occupancy", glob: "clients/ruby/\*\.gemspec"}, readme)
    assert_includes readme, "../CONTRACT.md"
  end
end
