# frozen_string_literal: true

require "set"
require "occupancy/error"

module Occupancy
  # Cached mode's background subscription: keeps a local copy of the occupied
  # set from the gate's +WatchOccupancy+ stream, in one thread per client and
  # process.
  #
  # It follows the stream's protocol: RESET drops the copy (not synchronised),
  # SNAPSHOT adds channels, SYNCED marks the copy current, CHANGE applies
  # occupied / vacated channels. When the stream ends or fails it is not
  # synchronised until the next SYNCED, and it resubscribes after 100 ms,
  # doubling up to 2 s (reset once synchronised again).
  #
  # @api private (used by {Client}; see +cached:+)
  class Watcher
    # Seconds before the first resubscription.
    INITIAL_BACKOFF = 0.1
    # The longest wait between two resubscriptions.
    MAX_BACKOFF = 2.0

    # @return [Integer] subscriptions opened so far (for tests and metrics)
    attr_reader :subscriptions

    # @param open_stream [#call] returns a started +return_op+ operation of
    #   the WatchOccupancy call (+#execute+ yields messages, +#cancel+ ends it)
    # @param to_error [#call] turns an exception from the stream into an
    #   {Occupancy::Error} (or re-raises)
    def initialize(open_stream:, to_error:)
      @open_stream = open_stream
      @to_error = to_error
      @mutex = Mutex.new
      @changed = ConditionVariable.new
      @set = Set.new
      @synced = false
      @last_error = nil
      @op = nil
      @thread = nil
      @stopping = false
      @subscriptions = 0
    end

    # Starts the subscription thread (again, after {#pause}).
    # @return [self]
    def start
      @mutex.synchronize do
        return self if @thread&.alive?

        @stopping = false
        @thread = Thread.new { run }
        @thread.name = "occupancy-watch" if @thread.respond_to?(:name=)
        @thread.report_on_exception = false
      end
      self
    end

    # Ends the subscription and waits for its thread.
    # @return [void]
    def stop
      thread = @mutex.synchronize do
        @stopping = true
        @synced = false
        cancel_op
        @changed.broadcast
        @thread
      end
      thread&.join(5)
      nil
    end

    # Around a fork (grpc >= 1.57): a thread inside a streaming call makes
    # GRPC.prefork refuse, so the subscription stops before the fork and
    # starts again after it in the parent.
    alias pause stop
    alias resume start

    # @return [Boolean] whether the local copy is current
    def synced?
      @mutex.synchronize { @synced }
    end

    # Waits up to +timeout+ seconds for the copy to be current, or until a
    # subscription attempt has failed (then there is no point in waiting).
    # @return [Boolean] whether it is current
    def wait_synced(timeout)
      deadline = now + timeout
      @mutex.synchronize do
        until @synced
          left = deadline - now
          break if left <= 0 || @stopping || @last_error

          @changed.wait(@mutex, left)
        end
        @synced
      end
    end

    # @param channel [String]
    # @return [Array(Boolean, Boolean, Occupancy::Error)] synchronised?,
    #   occupied in the copy?, and the last stream error (nil when none)
    def lookup(channel)
      @mutex.synchronize { [@synced, @set.include?(channel), @last_error] }
    end

    # @return [Integer] channels in the local copy
    def size
      @mutex.synchronize { @set.size }
    end

    private

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def cancel_op
      @op&.cancel
    rescue StandardError
      nil
    end

    def run
      backoff = INITIAL_BACKOFF
      until stopping?
        error = subscribe { backoff = INITIAL_BACKOFF }
        @mutex.synchronize do
          @synced = false
          @op = nil
          @last_error = error unless @stopping
          @changed.broadcast
          @changed.wait(@mutex, backoff) unless @stopping
        end
        backoff = [backoff * 2, MAX_BACKOFF].min
      end
    end

    def stopping?
      @mutex.synchronize { @stopping }
    end

    # One subscription; yields when it synchronises.
    # @return [Occupancy::Error] why it ended
    def subscribe
      op = @open_stream.call
      @mutex.synchronize do
        @subscriptions += 1
        return Error.new(Codes::CANCELLED, "stopped") if @stopping

        @op = op
      end
      op.execute.each do |message|
        yield if apply(message)
      end
      Error.new(Codes::UNAVAILABLE, "the WatchOccupancy stream ended")
    rescue StandardError => e
      @to_error.call(e)
    rescue Exception => e # rubocop:disable Lint/RescueException -- recorded, the thread ends
      Error.new(Codes::UNKNOWN, "#{e.class}: #{e.message}")
    end

    # @return [Boolean] whether the message made the copy current
    def apply(message)
      @mutex.synchronize do
        case message.kind
        when :KIND_RESET
          @set.clear
          @synced = false
        when :KIND_SNAPSHOT
          @set.merge(message.occupied)
        when :KIND_SYNCED
          @synced = true
          @last_error = nil
          @changed.broadcast
          return true
        when :KIND_CHANGE
          @set.merge(message.occupied)
          @set.subtract(message.vacated)
        end
        false
      end
    end
  end
end
