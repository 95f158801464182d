package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/banner-mta/banner/banner"
	"github.com/pelletier/go-toml/v2/unstable"
)

// checkSchema walks the parsed document against File's fields before it is
// decoded. It reports, each with its line and dotted key, every unknown key
// and every value of the wrong type, so that one mistake does not hide the
// next. Durations and addresses must be TOML strings: go-toml would store a
// bare integer in a Duration as nanoseconds (bantime = 3600 would ban for
// 3.6 µs) and hand floats and booleans to UnmarshalText without a position.
//
// It also records the line of every key the file sets (see keyLines), and
// returns a copy of data with every expression it found wrong blanked out
// (spaces, newlines kept, so positions do not move): decoding that copy
// gives the file's other values, which validate can then check. A syntax
// error ends the walk; it is reported with its line, column and text.
func (f *File) checkSchema(data []byte) *schemaResult {
	w := &schemaWalker{f: f, lines: keyLines{}, arrays: map[string]int{}}
	w.p.Reset(data)
	for i, c := range data {
		if c == '\n' {
			w.newlines = append(w.newlines, i)
		}
	}
	clean := slices.Clone(data)
	blank := func(from, to int) {
		for i := max(from, 0); i < min(to, len(clean)); i++ {
			if clean[i] != '\n' {
				clean[i] = ' '
			}
		}
	}
	var bad []string
	table, prefix, skipping := fileType, "", false
	for w.p.NextExpression() {
		e := w.p.Expression()
		n := len(w.errs)
		w.valueErr = false
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table, prefix = w.header(e)
			// The keys under a header found wrong go too, or they would
			// land in the table before it.
			skipping = len(w.errs) > n
			if skipping {
				from, to := w.lineSpan(keyNodes(e)[0])
				blank(from, to)
				if w.valueErr {
					bad = append(bad, w.errs[len(w.errs)-1].Key)
				}
			}
		case unstable.KeyValue:
			if table != nil {
				w.keyValue(table, prefix, e)
			}
			if skipping || len(w.errs) > n {
				blank(int(e.Raw.Offset), int(e.Raw.Offset+e.Raw.Length))
			}
			if !skipping && w.valueErr {
				bad = append(bad, join(prefix, dotted(keyNodes(e))))
			}
		}
	}
	r := &schemaResult{lines: w.lines, errs: w.errs, clean: clean, bad: bad}
	if err := w.p.Error(); err != nil {
		r.syntax = w.syntaxError(err)
	}
	return r
}

// schemaResult is what checkSchema found.
type schemaResult struct {
	lines keyLines
	errs  []*Error
	// syntax is the syntax error that ended the walk, or nil.
	syntax *Error
	// clean is the document without the expressions reported in errs.
	clean []byte
	// bad are the dotted keys whose values were blanked for their type
	// or value: their defaults stand in, and validate's verdict on them
	// would be about the default, not the file.
	bad []string
}

// syntaxError places a parser error at its line and column and quotes the
// line.
func (w *schemaWalker) syntaxError(err error) *Error {
	e := &Error{Path: w.f.path, Err: fmt.Errorf("syntax error: %w", err)}
	var pe *unstable.ParserError
	if !errors.As(err, &pe) {
		return e
	}
	data := w.p.Data()
	off := cap(data) - cap(pe.Highlight)
	if pe.Highlight == nil || off < 0 || off > len(data) {
		return e
	}
	e.Line, e.Column, e.Context = position(data, off)
	return e
}

// position returns the line and column (in characters, from 1) of byte
// offset off in data, and the line's text with a caret under the column.
func position(data []byte, off int) (line, col int, context string) {
	start := bytes.LastIndexByte(data[:off], '\n') + 1
	end := bytes.IndexByte(data[off:], '\n')
	if end < 0 {
		end = len(data)
	} else {
		end += off
	}
	line = bytes.Count(data[:start], []byte("\n")) + 1
	text := strings.TrimRight(strings.ToValidUTF8(string(data[start:end]), "\uFFFD"), "\r")
	before := strings.ToValidUTF8(string(data[start:off]), "\uFFFD")
	col = utf8.RuneCountInString(before) + 1
	// The caret keeps the line's tabs, so it lines up under the column.
	caret := strings.Map(func(r rune) rune {
		if r == '\t' {
			return r
		}
		return ' '
	}, before) + "^"
	num := strconv.Itoa(line)
	context = fmt.Sprintf("  %s | %s\n  %s | %s", num, text, strings.Repeat(" ", len(num)), caret)
	return line, col, context
}

// lineSpan returns the offsets of the start and end of n's line.
func (w *schemaWalker) lineSpan(n *unstable.Node) (from, to int) {
	i, _ := slices.BinarySearch(w.newlines, int(n.Raw.Offset))
	if i > 0 {
		from = w.newlines[i-1] + 1
	}
	to = len(w.p.Data())
	if i < len(w.newlines) {
		to = w.newlines[i]
	}
	return from, to
}

var (
	fileType     = reflect.TypeFor[File]()
	durationType = reflect.TypeFor[Duration]()
	prefixType   = reflect.TypeFor[Prefix]()

	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

type schemaWalker struct {
	f      *File
	p      unstable.Parser
	lines  keyLines
	arrays map[string]int // [[name]] headers seen so far
	// newlines are the offsets of the document's line feeds.
	newlines []int
	errs     []*Error
	// valueErr is set when the expression being walked has a value of the
	// wrong type or an invalid one (not only an unknown key).
	valueErr bool
	// block is the [[array]] element the walk is in, for hints.
	block *arrayBlock
}

// arrayBlock is one [[name]] header: its line and the table type holding
// the array.
type arrayBlock struct {
	name   string
	line   int
	parent reflect.Type
}

// line returns the line n starts on, 0 when the parser gives no position.
func (w *schemaWalker) line(n *unstable.Node) int {
	if n == nil || n.Raw.Length == 0 && n.Raw.Offset == 0 {
		return 0
	}
	i, _ := slices.BinarySearch(w.newlines, int(n.Raw.Offset))
	return i + 1
}

func (w *schemaWalker) record(key string, line int) {
	if _, ok := w.lines[key]; !ok && line > 0 {
		w.lines[key] = line
	}
}

// fail reports a value of the wrong type, or an invalid one.
func (w *schemaWalker) fail(line int, key string, err error) {
	w.valueErr = true
	w.errs = append(w.errs, &Error{Path: w.f.path, Line: line, Key: key, Err: err})
}

// unknown reports key, unknown in table t, with the known key nearest to
// it when one is close enough to be a typo (maxretyr: maxretry).
func (w *schemaWalker) unknown(line int, key string, t reflect.Type) {
	err := fmt.Errorf("%w (README's configuration reference lists the keys)", errUnknownKey)
	_, last := cutLast(key)
	if near := nearestKey(t, last); near != "" {
		err = fmt.Errorf("%w: did you mean %q?", errUnknownKey, near)
	}
	w.errs = append(w.errs, &Error{Path: w.f.path, Line: line, Key: key, Err: err})
}

// misplaced reports key, unknown in the [[array]] element the walk is in
// but a key of the table that holds the array: it was written below the
// block instead of above it.
func (w *schemaWalker) misplaced(line int, key string, b *arrayBlock) {
	parent, _ := cutLast(b.name)
	w.errs = append(w.errs, &Error{Path: w.f.path, Line: line, Key: key, Err: fmt.Errorf(
		"%w: this line is inside the [[%s]] block that starts at line %d; keys of [%s] go above it",
		errUnknownKey, b.name, b.line, parent)})
}

var errUnknownKey = errors.New("unknown key")

// cutLast splits a dotted key at its last dot.
func cutLast(key string) (prefix, last string) {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i], key[i+1:]
	}
	return "", key
}

// nearestKey returns the key of table t (a struct) within edit distance 2
// of name (1 for names of 4 letters or fewer), or "".
func nearestKey(t reflect.Type, name string) string {
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	best, bestD := "", 3
	if len(name) <= 4 {
		bestD = 2
	}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if !sf.IsExported() || tag == "" || tag == "-" {
			continue
		}
		if d := editDistance(strings.ToLower(name), tag); d < bestD {
			best, bestD = tag, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment) between a and b: a swap of two neighbours counts one.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func keyNodes(e *unstable.Node) []*unstable.Node {
	var ks []*unstable.Node
	it := e.Key()
	for it.Next() {
		ks = append(ks, it.Node())
	}
	return ks
}

// dotted joins the parts of a key with dots.
func dotted(keys []*unstable.Node) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = string(k.Data)
	}
	return strings.Join(parts, ".")
}

// blockPrefix is the dotted key of the [[array]] element the walk is in,
// e.g. "policy.immediate[0]".
func (w *schemaWalker) blockPrefix() string {
	return fmt.Sprintf("%s[%d]", w.block.name, w.arrays[w.block.name]-1)
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// isTable reports whether t is written as a TOML table: a struct or a map,
// not a value type such as Prefix that reads itself from a string.
func isTable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Map:
		return t.Key().Kind() == reflect.String
	case reflect.Struct:
		return !reflect.PointerTo(t).Implements(textUnmarshalerType)
	}
	return false
}

// isTableArray reports whether t is written as [[name]] tables.
func isTableArray(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && isTable(t.Elem())
}

// child returns the type of key name in table type t.
func child(t reflect.Type, name string) (reflect.Type, bool) {
	switch t.Kind() {
	case reflect.Map:
		return t.Elem(), true
	case reflect.Struct:
		// Exactly, or else regardless of case, as the decoder matches
		// keys to fields (a file with "BanTime" has always loaded).
		var folded reflect.Type
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			tag, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
			if tag == name {
				return sf.Type, true
			}
			if folded == nil && strings.EqualFold(tag, name) {
				folded = sf.Type
			}
		}
		return folded, folded != nil
	}
	return nil, false
}

// header handles [a.b] and [[a.b]]; it returns the table's type and dotted
// key, or nil when the keys under it are not to be checked (an error was
// reported, or the decoder will report one).
func (w *schemaWalker) header(e *unstable.Node) (reflect.Type, string) {
	keys := keyNodes(e)
	line := w.line(keys[0])
	t, name := fileType, ""
	w.block = nil
	for i, k := range keys {
		last := i == len(keys)-1
		name = join(name, string(k.Data))
		ct, ok := child(t, string(k.Data))
		if !ok {
			w.unknown(line, name, t)
			return nil, ""
		}
		pt := t
		t = ct
		switch {
		case isTableArray(t) && last:
			if e.Kind != unstable.ArrayTable {
				w.fail(line, name, fmt.Errorf("wrong type: want an array of tables, written [[%s]]", name))
				return nil, ""
			}
			w.record(name, line)
			if i > 0 {
				w.block = &arrayBlock{name: name, line: line, parent: pt}
			}
			n := w.arrays[name]
			w.arrays[name]++
			name = fmt.Sprintf("%s[%d]", name, n)
			t = t.Elem()
		case isTableArray(t):
			// [a.b] under [[a]]: a table in a's last element.
			n := w.arrays[name] - 1
			if n < 0 {
				return nil, "" // the decoder says what is wrong
			}
			name = fmt.Sprintf("%s[%d]", name, n)
			t = t.Elem()
		case !isTable(t):
			w.fail(line, name, fmt.Errorf("wrong type: want %s, got a table", describe(t)))
			return nil, ""
		case last && e.Kind == unstable.ArrayTable:
			w.fail(line, name, fmt.Errorf("wrong type: want a table, written [%s], got an array of tables", name))
			return nil, ""
		}
		w.record(name, line)
	}
	return t, name
}

// keyValue handles key = value in table t (dotted key prefix).
func (w *schemaWalker) keyValue(t reflect.Type, prefix string, e *unstable.Node) {
	keys := keyNodes(e)
	line := w.line(keys[0])
	name := prefix
	for i, k := range keys {
		name = join(name, string(k.Data))
		ct, ok := child(t, string(k.Data))
		if !ok {
			if b := w.block; b != nil && i == 0 && prefix == w.blockPrefix() {
				if _, inParent := child(b.parent, string(k.Data)); inParent {
					w.misplaced(line, name, b)
					return
				}
			}
			w.unknown(line, name, t)
			return
		}
		t = ct
		if i < len(keys)-1 {
			if !isTable(t) {
				w.fail(line, name, fmt.Errorf("wrong type: want %s, got a table", describe(t)))
				return
			}
			w.record(name, line)
		}
	}
	w.record(name, line)
	w.value(t, e.Value(), name, line)
}

// value checks v against t. Errors in array elements point at the array's
// key line.
func (w *schemaWalker) value(t reflect.Type, v *unstable.Node, key string, line int) {
	switch {
	case t == durationType:
		if v.Kind != unstable.String {
			hint := ""
			if v.Kind == unstable.Integer || v.Kind == unstable.Float {
				hint = " (a bare number is not seconds)"
			}
			w.fail(line, key, fmt.Errorf("%s: write durations as strings with a unit, e.g. \"1h\"%s", w.shown(v), hint))
		} else if _, err := banner.ParseDuration(string(v.Data)); err != nil {
			w.fail(line, key, err)
		}
		return
	case t == prefixType:
		if v.Kind != unstable.String {
			w.fail(line, key, fmt.Errorf("%s: write addresses as strings, e.g. \"192.0.2.7\" or \"192.0.2.0/24\"", w.shown(v)))
		} else if _, err := ParsePrefix(string(v.Data)); err != nil {
			w.fail(line, key, err)
		}
		return
	}
	ok := false
	switch t.Kind() {
	case reflect.String:
		ok = v.Kind == unstable.String
	case reflect.Bool:
		ok = v.Kind == unstable.Bool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if ok = v.Kind == unstable.Integer; ok {
			w.intRange(t, v, key, line)
		}
	case reflect.Float32, reflect.Float64:
		ok = v.Kind == unstable.Integer || v.Kind == unstable.Float
	case reflect.Slice:
		if ok = v.Kind == unstable.Array; ok {
			it, i := v.Children(), 0
			for it.Next() {
				w.value(t.Elem(), it.Node(), fmt.Sprintf("%s[%d]", key, i), line)
				i++
			}
		}
	case reflect.Struct, reflect.Map:
		if ok = v.Kind == unstable.InlineTable; ok {
			it := v.Children()
			for it.Next() {
				if kv := it.Node(); kv.Kind == unstable.KeyValue {
					w.keyValue(t, key, kv)
				}
			}
		}
	default:
		return // not in the schema; the decoder decides
	}
	if !ok {
		w.fail(line, key, fmt.Errorf("wrong type: want %s, got %s%s", describe(t), kindWords[v.Kind], w.shown(v)))
	}
}

var kindWords = map[unstable.Kind]string{
	unstable.String: "the string ", unstable.Integer: "the integer ", unstable.Float: "the number ", unstable.Bool: "",
	unstable.LocalDate: "the date ", unstable.LocalTime: "the time ", unstable.LocalDateTime: "the date ", unstable.DateTime: "the date ",
}

// intRange reports an integer that does not fit t (a port over 65535).
func (w *schemaWalker) intRange(t reflect.Type, v *unstable.Node, key string, line int) {
	n, err := strconv.ParseInt(string(v.Data), 0, 64)
	if err != nil {
		return // the decoder says what is wrong
	}
	z := reflect.New(t).Elem()
	lo, hi := "", ""
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n >= 0 && !z.OverflowUint(uint64(n)) {
			return
		}
		lo, hi = "0", strconv.FormatUint(uint64(1)<<(t.Bits()-1)*2-1, 10)
	default:
		if !z.OverflowInt(n) {
			return
		}
		lo, hi = strconv.FormatInt(-1<<(t.Bits()-1), 10), strconv.FormatInt(1<<(t.Bits()-1)-1, 10)
	}
	w.fail(line, key, fmt.Errorf("%s: out of range %s..%s", w.shown(v), lo, hi))
}

// describe says what a value of type t looks like in the file.
func describe(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration string such as "1h"`
	case t == prefixType:
		return `an address string such as "192.0.2.0/24"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		switch e := t.Elem(); {
		case e == prefixType:
			return `an array of address strings such as ["192.0.2.0/24"]`
		case e.Kind() == reflect.String:
			return "an array of strings"
		case isTable(e):
			return "an array of tables"
		}
		return "an array of " + strings.TrimPrefix(describe(t.Elem()), "an ") + "s"
	}
	return "a table"
}

// shown is how an error quotes a value: as written for scalars, by kind for
// arrays and tables.
func (w *schemaWalker) shown(v *unstable.Node) string {
	switch v.Kind {
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "a table"
	case unstable.String:
		return fmt.Sprintf("%q", v.Data)
	}
	if v.Raw.Length > 0 {
		return string(w.p.Raw(v.Raw))
	}
	return string(v.Data)
}
