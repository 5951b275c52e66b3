package dynamostore

import (
	"fmt"
	"slices"
)

// OpenMethod names opening a store (New, and Open without create) in
// IAMActions: it reads the table's epoch item and creates it on first use.
const OpenMethod = "New"

// iamActions lists, for each exported method of *Store and for opening a
// store, the IAM actions of the DynamoDB calls it can make, on any path.
// IAM authorises a TransactWriteItems as the actions of its items (a Put
// item is dynamodb:PutItem); there is no IAM action of that name. The
// recording test in actions_test.go checks this table against the calls the
// methods really make.
var iamActions = map[string][]string{
	OpenMethod: {"dynamodb:GetItem", "dynamodb:PutItem"},
	"Epoch":    nil, // read once by New
	"Ping":     {"dynamodb:GetItem"},
	// Idempotency lookup, sequence number, the message (PutItem, or a
	// TransactWriteItems of two Puts), and the tombstone that closes its
	// own number when a concurrent first attempt with the same key won or
	// when the write's outcome has to be settled.
	"Append":     {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"},
	"Head":       {"dynamodb:GetItem"},
	"Read":       {"dynamodb:Query"},
	"ReadBefore": {"dynamodb:Query"},
	"Tombstone":  {"dynamodb:PutItem"},
	// The sequence number and the signal; a tombstone settles its outcome.
	"AppendClose":      {"dynamodb:UpdateItem", "dynamodb:PutItem"},
	"LeaseOf":          {"dynamodb:GetItem"},
	"IncrementCounter": {"dynamodb:UpdateItem"},
	"PutLease":         {"dynamodb:PutItem"},
	"DeleteLease":      {"dynamodb:DeleteItem"},
	"CountLeases":      {"dynamodb:Query"},
	"CountLeasesOf":    {"dynamodb:Query"},
}

// IAMActions returns the IAM actions (sorted, each once) that a process
// needs on the table to open the store and call the named methods of
// *Store: what a least-privilege policy for that process grants. An unknown
// method name is an error, so a caller cannot silently under-grant.
func IAMActions(methods ...string) ([]string, error) {
	var out []string
	for _, m := range append([]string{OpenMethod}, methods...) {
		actions, ok := iamActions[m]
		if !ok {
			return nil, fmt.Errorf("dynamostore: no IAM actions declared for method %q", m)
		}
		out = append(out, actions...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
