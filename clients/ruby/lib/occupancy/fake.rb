# frozen_string_literal: true

require "logger"
require "set"
require "occupancy/codes"
require "occupancy/error"
require "occupancy/names"
require "occupancy/error_hook"

module Occupancy
  # An in-memory stand-in for {Client}, for encoder teams' own unit tests. It
  # has the client's public methods and behaviour (name checks, failure
  # policy, hook, closed error) without a gate: channels are marked occupied
  # by hand, publishes are recorded, and an outage can be simulated. It never
  # loads grpc.
  #
  # @example
  #   gate = Occupancy::Fake.new
  #   gate.occupy("job-42")
  #   MyEncoder.new(gate).report_progress(40)
  #   gate.published # => [#<struct Occupancy::Fake::Publish channels=["job-42"], event="progress", ...>]
  class Fake
    # One recorded {#publish_if_occupied} that reached "Pusher".
    Publish = Struct.new(:channels, :event, :data, :socket_id, keyword_init: true)

    # @return [Boolean] the failure policy of {#occupied?}
    attr_reader :fail_open

    # @param occupied [Array<String>] channels occupied from the start
    # @param fail_open [Boolean] as for {Client}
    # @param on_error [#call, nil] as for {Client}
    # @param logger [Logger, nil] as for {Client}
    def initialize(occupied: [], fail_open: true, on_error: nil, logger: nil)
      raise ArgumentError, "fail_open must be true or false" unless [true, false].include?(fail_open)
      raise ArgumentError, "on_error must respond to #call" unless on_error.nil? || on_error.respond_to?(:call)

      @fail_open = fail_open
      @logger = logger || Logger.new($stderr)
      @on_error = on_error || RateLimitedWarning.new(logger: @logger)
      @mutex = Mutex.new
      @occupied = Set.new
      @published = []
      @failure = nil
      @closed = false
      occupied.each { |c| occupy(c) }
    end

    # Marks channels occupied (as a channel_occupied webhook would).
    # @return [self]
    def occupy(*channels)
      channels.flatten.each { |c| Names.channel!(c) }
      @mutex.synchronize { @occupied.merge(channels.flatten) }
      self
    end

    # Marks channels vacant (as a channel_vacated webhook would).
    # @return [self]
    def vacate(*channels)
      @mutex.synchronize { @occupied.subtract(channels.flatten) }
      self
    end

    # Makes every later call fail with +error+ until {#recover}, as the real
    # client would see it: +fail_with(Occupancy::Error.new(Occupancy::Codes::UNAVAILABLE, "down"))+
    # simulates an outage (fail-open answers true and calls the hook), any
    # other code a configuration bug (raised). Publishing always raises.
    #
    # @param error [Occupancy::Error, Integer] an error, or a code
    # @return [self]
    def fail_with(error)
      error = Error.new(error, "simulated by Occupancy::Fake") if error.is_a?(Integer)
      raise ArgumentError, "fail_with takes an Occupancy::Error or a code; call recover to end a failure" unless error.is_a?(Error)

      @mutex.synchronize { @failure = error }
      self
    end

    # Ends a failure set with {#fail_with}.
    # @return [self]
    def recover
      @mutex.synchronize { @failure = nil }
      self
    end

    # @deprecated Use {#fail_with} (the name every client's fake uses).
    #   Without an argument it still simulates +UNAVAILABLE+.
    def fail!(error = Codes::UNAVAILABLE)
      fail_with(error)
    end

    # @deprecated Use {#recover}.
    def recover!
      recover
    end

    # @return [Array<Publish>] the publishes that reached "Pusher" (only the
    #   occupied channels of each), oldest first
    def published
      @mutex.synchronize { @published.dup }
    end

    # Forgets the recorded publishes.
    # @return [self]
    def clear_published
      @mutex.synchronize { @published.clear }
      self
    end

    # Same contract as {Client#occupied?}.
    def occupied?(channel)
      raise ClosedError if @closed

      Names.channel!(channel)
      failure = @mutex.synchronize { @failure }
      if failure
        raise failure unless @fail_open && failure.outage?

        report(failure)
        return true
      end
      @mutex.synchronize { @occupied.include?(channel) }
    end

    # Same contract as {Client#publish_if_occupied}; records what an occupied
    # channel would have received.
    # @return [PublishResult]
    def publish_if_occupied(channels, event, data, socket_id: nil)
      raise ClosedError if @closed

      list = Names.channels!(channels).uniq
      Names.event!(event)
      raise InvalidArgumentError, "data must be a String, got #{data.class}" unless data.is_a?(String)
      unless socket_id.nil? || socket_id.is_a?(String)
        raise InvalidArgumentError, "socket_id must be a String, got #{socket_id.class}"
      end

      @mutex.synchronize do
        raise @failure if @failure

        published, skipped = list.partition { |c| @occupied.include?(c) }
        unless published.empty?
          @published << Publish.new(channels: published, event: event, data: data, socket_id: socket_id)
        end
        PublishResult.new(published: published, skipped: skipped, deferred: [], superseded: 0,
                          store_unavailable: false)
      end
    end

    # Always true: the fake's copy is always current.
    def synced?
      !@closed
    end

    # Same contract as {Client#wait_synced}: the fake's copy is always
    # current, so this answers true at once.
    # @return [Boolean]
    # @raise [ClosedError] after {#close}
    def wait_synced(_timeout = 5.0)
      raise ClosedError if @closed

      true
    end

    # Same contract as {Client#close}.
    def close
      @closed = true
      nil
    end

    # @return [Boolean]
    def closed?
      @closed
    end

    private

    def report(error)
      @on_error.call(error)
    rescue StandardError => e
      @logger.warn("occupancy: the on_error hook raised #{e.class}: #{e.message}")
    end
  end
end
