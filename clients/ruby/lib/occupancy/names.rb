# frozen_string_literal: true

require "occupancy/error"

module Occupancy
  # The gate's rules for names, checked locally before any call so that a
  # malformed name raises {InvalidArgumentError} even while the gate is down
  # (a fail-open client never answers "occupied" for a name Pusher would
  # reject). Shared by {Client} and {Fake}, so both reject the same input.
  module Names
    # A Pusher channel name: 1 to 164 characters of +A-Z a-z 0-9 _ - = @ , . ;+.
    CHANNEL = /\A[A-Za-z0-9_\-=@,.;]{1,164}\z/
    # Channels per publish.
    MAX_CHANNELS = 100
    # Characters in an event name.
    MAX_EVENT = 200

    module_function

    # @param channel [Object]
    # @return [String] +channel+, when it is a valid channel name
    # @raise [InvalidArgumentError] otherwise
    def channel!(channel)
      unless channel.is_a?(String)
        raise InvalidArgumentError, "channel must be a String, got #{channel.class}"
      end
      unless channel.match?(CHANNEL)
        raise InvalidArgumentError,
              "channel #{channel.inspect[0, 200]} is not a valid Pusher channel name " \
              "(1 to 164 characters of A-Z a-z 0-9 _ - = @ , . ;)"
      end

      channel
    end

    # @param channels [Array<String>, String] one name or a list
    # @return [Array<String>] the names, each checked
    # @raise [InvalidArgumentError]
    def channels!(channels)
      list = channels.is_a?(String) ? [channels] : channels
      raise InvalidArgumentError, "channels must be a String or an Array of Strings" unless list.is_a?(Array)
      if list.empty? || list.size > MAX_CHANNELS
        raise InvalidArgumentError, "channels must list 1 to #{MAX_CHANNELS} channels, got #{list.size}"
      end

      list.each { |c| channel!(c) }
      list
    end

    # @param event [Object]
    # @return [String] +event+, when it is 1 to 200 characters
    # @raise [InvalidArgumentError]
    def event!(event)
      raise InvalidArgumentError, "event must be a String, got #{event.class}" unless event.is_a?(String)
      unless (1..MAX_EVENT).cover?(event.length)
        raise InvalidArgumentError, "event must be 1 to #{MAX_EVENT} characters, got #{event.length}"
      end

      event
    end
  end
end
