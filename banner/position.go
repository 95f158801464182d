package banner

import "time"

// LogPosition is where a reader of a log stopped: in a file, the offset
// with the file's identity (device and inode) so that a rotated file is
// recognised after a restart; in the systemd journal, the cursor of the
// last entry read (Cursor, the other fields zero).
type LogPosition struct {
	Device  uint64
	Inode   uint64
	Offset  int64 // bytes consumed: just after a newline
	Size    int64 // the file's size when saved (informational)
	ModTime time.Time
	// Cursor is the journal cursor ("s=...;i=...;...") of the last entry
	// read, for a journal source; empty for a file.
	Cursor string
}
