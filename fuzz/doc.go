// Package fuzz holds courier's fuzz targets: one for everything that parses
// bytes a network can deliver. Each target has a seed corpus under
// testdata/fuzz/<target>, checked in; `make fuzz` runs every target for
// FUZZTIME and CI runs each for 5000 inputs.
//
// The properties checked are the same throughout: no input makes a decoder
// panic or allocate beyond its limits; an input is either refused with an
// error or decoded into values that encode back to an equivalent input.
package fuzz
