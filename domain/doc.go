// Package domain holds parley's entities and rules: users, conversations
// (direct, group and customer service), group members and their roles,
// messages and the system events that change them. It is pure Go with no
// I/O, no clock and no randomness: callers pass times, seqs and random bytes
// in, so every rule is a function of its inputs and tested as one. It imports
// nothing of this project; the app layer persists and delivers what the
// domain validates.
//
// Groups use read diffusion: one message log per group, and per member a
// record (Member) holding the visible window of that log, the read cursor and
// the last own send. Every change to a group is a SystemEvent appended to the
// group's own seq stream, so members learn of it through the same sync as
// messages. Who may do what is decided in one place, Permit.
package domain
