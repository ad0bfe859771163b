package occupancy

import "unicode/utf8"

// Limits of the gate's requests, checked by the client before any call (see
// proto/occupancy/v1/occupancy.proto).
const (
	MaxChannelNameLen    = 164   // characters of a channel name
	MaxPublishChannels   = 100   // channels of one publish
	MaxEventNameLen      = 200   // characters of an event name
	MaxPublishDataLength = 10240 // bytes of an event's data
)

// CheckChannel reports whether name is a valid Pusher channel name: 1 to 164
// characters of A-Z a-z 0-9 _ - = @ , . ; (prefixes such as "private-" are
// part of the name). The error is an *Error with code INVALID_ARGUMENT, the
// same one IsOccupied returns for that name without calling the gate.
func CheckChannel(name string) error {
	if err := checkChannel(name); err != nil {
		return err
	}
	return nil
}

// CheckPublish reports whether a PublishIfOccupied call with these arguments
// passes the client's local checks: 1 to 100 valid channel names, an event
// name of 1 to 200 characters and at most 10240 bytes of data. The error is
// an *Error with code INVALID_ARGUMENT.
func CheckPublish(channels []string, event, data string) error {
	if err := checkPublish(channels, event, data); err != nil {
		return err
	}
	return nil
}

func checkChannel(name string) *Error {
	if name == "" {
		return invalidArgument("channel: must not be empty")
	}
	if len(name) > MaxChannelNameLen {
		return invalidArgument("channel %q: longer than %d characters", truncate(name), MaxChannelNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !channelByte(name[i]) {
			r, _ := utf8.DecodeRuneInString(name[i:])
			return invalidArgument("channel %q: character %q is not allowed (only A-Z a-z 0-9 _ - = @ , . ;)", truncate(name), r)
		}
	}
	return nil
}

func channelByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '_', '-', '=', '@', ',', '.', ';':
		return true
	}
	return false
}

func checkPublish(channels []string, event, data string) *Error {
	if len(channels) == 0 {
		return invalidArgument("channels: at least one channel is required")
	}
	if len(channels) > MaxPublishChannels {
		return invalidArgument("channels: %d given, at most %d allowed", len(channels), MaxPublishChannels)
	}
	for _, ch := range channels {
		if err := checkChannel(ch); err != nil {
			return err
		}
	}
	if event == "" {
		return invalidArgument("event: must not be empty")
	}
	if n := utf8.RuneCountInString(event); n > MaxEventNameLen {
		return invalidArgument("event: %d characters, at most %d allowed", n, MaxEventNameLen)
	}
	if len(data) > MaxPublishDataLength {
		return invalidArgument("data: %d bytes, at most %d allowed", len(data), MaxPublishDataLength)
	}
	return nil
}

// truncate keeps error messages short when a caller passes a huge name.
func truncate(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
