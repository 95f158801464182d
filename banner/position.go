package banner

import "time"

// LogPosition is where a reader of a log file stopped, with the file's
// identity (device and inode) so that a rotated file is recognised after a
// restart.
type LogPosition struct {
	Device  uint64
	Inode   uint64
	Offset  int64 // bytes consumed: just after a newline
	Size    int64 // the file's size when saved (informational)
	ModTime time.Time
}
