package memstore_test

import (
	"testing"

	"github.com/webhook-relay/webhook-relay/internal/store/memstore"
	"github.com/webhook-relay/webhook-relay/internal/store/storetest"
)

func TestConformanceMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store {
		return memstore.New(o)
	})
}
