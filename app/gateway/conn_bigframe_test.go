package gateway

import (
	"strings"
	"testing"
	"time"
)

func TestLargeFrameCutEverywhereIsReadWhole(t *testing.T) {
	for _, size := range []int{20000, 40000, 65000} {
		c, _ := dialRaw(t)
		pad := strings.Repeat("x", size)
		big := clientFrame(true, opText, []byte(`{"type":"ping","id":"big","body":"`+pad+`"}`), testKey)
		small := clientFrame(true, opText, []byte(`{"type":"ping","id":"s1"}`), testKey)
		tail := clientFrame(true, opText, []byte(`{"type":"ping","id":"s2"}`), testKey)
		c.write(append(append([]byte{}, small...), big[:1]...))
		time.Sleep(10 * time.Millisecond)
		c.write(big[1:9])
		time.Sleep(10 * time.Millisecond)
		rest := big[9:]
		for len(rest) > 7000 {
			c.write(rest[:7000])
			rest = rest[7000:]
			time.Sleep(5 * time.Millisecond)
		}
		c.write(append(append([]byte{}, rest...), tail...))
		for _, id := range []string{"s1", "big", "s2"} {
			if got := c.next(); !strings.Contains(got, `"id":"`+id+`"`) {
				t.Fatalf("size %d: want %s got %.80s", size, id, got)
			}
		}
	}
}
