package journal

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// CursorTime returns the realtime stamp encoded in a journal cursor (its
// "t=" field, hexadecimal microseconds since the epoch). The Reader seeks
// there when the cursor's entry no longer exists.
func CursorTime(cursor string) (time.Time, error) {
	for _, f := range strings.Split(cursor, ";") {
		v, ok := strings.CutPrefix(f, "t=")
		if !ok {
			continue
		}
		us, err := strconv.ParseUint(v, 16, 63)
		if err != nil {
			return time.Time{}, fmt.Errorf("journal cursor %q: bad t= field: %w", cursor, err)
		}
		return time.UnixMicro(int64(us)), nil
	}
	return time.Time{}, fmt.Errorf("journal cursor %q has no t= field", cursor)
}
