package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"time"
)

// feedName is what a feed's name may be: it is part of its bans' reason.
var feedName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// validateFeeds checks [[feeds]]: unique names, absolute paths, an interval
// of at least 1s.
func (f *File) validateFeeds() []error {
	var errs []error
	seen := map[string]bool{}
	for i, fd := range f.Feeds {
		key := func(k string) string { return fmt.Sprintf("feeds[%d].%s", i, k) }
		switch {
		case !feedName.MatchString(fd.Name):
			errs = append(errs, f.fieldError(key("name"), fmt.Errorf("want 1-64 of a-z, 0-9, '_', '.', '-' (starting with a letter or digit), got %q", fd.Name)))
		case seen[fd.Name]:
			errs = append(errs, f.fieldError(key("name"), fmt.Errorf("%q: another feed has this name", fd.Name)))
		}
		seen[fd.Name] = true
		if !filepath.IsAbs(fd.Path) {
			errs = append(errs, f.fieldError(key("path"), errors.New("want an absolute path")))
		}
		if fd.Interval != 0 && time.Duration(fd.Interval) < time.Second {
			errs = append(errs, f.fieldError(key("interval"), fmt.Errorf("must be at least 1s, got %v", time.Duration(fd.Interval))))
		}
	}
	return errs
}
