package chat

import (
	"sync"
	"time"

	"github.com/parley-im/parley/domain"
)

// limiter is a token bucket per user, allowing bursts of twice the rate.
// Buckets of users idle for a minute are swept when a shard grows, so memory
// follows the number of active senders.
type limiter struct {
	shards [64]struct {
		sync.Mutex
		buckets map[domain.UserID]*bucket
	}
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter() *limiter {
	l := &limiter{}
	for i := range l.shards {
		l.shards[i].buckets = make(map[domain.UserID]*bucket)
	}
	return l
}

func (l *limiter) allow(u domain.UserID, rate float64, now time.Time) bool {
	var h uint32 = 2166136261
	for i := 0; i < len(u); i++ {
		h = (h ^ uint32(u[i])) * 16777619
	}
	sh := &l.shards[h%uint32(len(l.shards))]
	sh.Lock()
	defer sh.Unlock()
	burst := 2 * rate
	b := sh.buckets[u]
	if b == nil {
		if len(sh.buckets) >= 1024 {
			for k, v := range sh.buckets {
				if now.Sub(v.last) > time.Minute {
					delete(sh.buckets, k)
				}
			}
		}
		b = &bucket{tokens: burst, last: now}
		sh.buckets[u] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
