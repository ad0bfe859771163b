# frozen_string_literal: true

require "logger"

module Occupancy
  # The default +on_error+ hook: logs a warning about the errors a fail-open
  # check swallowed, at most once per +interval+ seconds (30 by default),
  # saying how many were swallowed since the last warning. An outage of the
  # gate therefore shows up in the encoder's log without flooding it.
  #
  # A hook given by the caller replaces this one and sees every error.
  class RateLimitedWarning
    # Seconds between two warnings.
    DEFAULT_INTERVAL = 30.0

    # @param logger [Logger] where the warning goes
    # @param interval [Numeric] minimum seconds between two warnings
    # @param clock [#call] monotonic seconds (injectable for tests)
    def initialize(logger:, interval: DEFAULT_INTERVAL,
                   clock: -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) })
      @logger = logger
      @interval = interval
      @clock = clock
      @mutex = Mutex.new
      @swallowed = 0
      @last_warning = nil
    end

    # @param error [Occupancy::Error] a swallowed error
    # @return [void]
    def call(error)
      count = @mutex.synchronize do
        @swallowed += 1
        now = @clock.call
        next nil if @last_warning && now - @last_warning < @interval

        @last_warning = now
        swallowed = @swallowed
        @swallowed = 0
        swallowed
      end
      return unless count

      @logger.warn(
        "occupancy: the gate check failed and fail-open answered \"occupied\"; " \
        "#{count} error#{'s' unless count == 1} swallowed since the last warning " \
        "(at most one warning per #{@interval.to_i} s); latest: #{error.message}"
      )
    end
  end
end
