// Package layers holds the test that keeps banner's import graph as
// DESIGN.md draws it: each package imports only packages of lower layers,
// and the root package banner, the shared vocabulary, imports none.
package layers
