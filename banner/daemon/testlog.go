package daemon

import (
	"io"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/logwatch"
)

// TestLogResult is what `banner test-log` reports: what the patterns
// matched, and the bans the engine would have issued, under Engine.
type TestLogResult struct {
	Report *logwatch.Report
	Bans   []banner.Ban
	Engine engine.Config
}

// LogMatcher is the matcher `banner test-log` runs: cfg's log patterns or,
// if pattern is not empty, that one regular expression alone. Its error is
// the caller's mistake (a pattern that does not compile), found before any
// log is opened.
func LogMatcher(cfg *config.File, pattern string) (*logwatch.Matcher, error) {
	mcfg := cfg.MatcherConfig()
	if pattern != "" {
		mcfg.Builtin = nil
		mcfg.Patterns = []logwatch.Pattern{{Name: "cmdline", Regex: pattern}}
	}
	return logwatch.NewMatcher(mcfg)
}

// TestLog runs m over in and replays the matches through the engine's
// decisions under cfg, with each line's time as the clock, as the daemon
// would have decided them. top is how many addresses per pattern the
// report lists (0: all). Nothing is changed anywhere.
func TestLog(cfg *config.File, m *logwatch.Matcher, in io.Reader, top int) (TestLogResult, error) {
	var events []banner.Event
	report, err := logwatch.AnalyzeTop(in, m, func(mt logwatch.Match) {
		events = append(events, mt.Event())
	}, top)
	res := TestLogResult{Report: report, Engine: cfg.EngineConfig(nil)}
	if err != nil {
		return res, err
	}
	res.Bans = engine.Simulate(res.Engine, events)
	return res, nil
}
