package chat_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/domain"
)

func TestServiceThroughSendPath(t *testing.T) {
	f := newServiceFixture(t, "ann")
	send := chat.NewSendMessageHandler(f.st, f.live, f.box, time.Now).WithService(f.svc)
	hist := chat.NewHistoryHandler(f.st)
	ctx := context.Background()
	res, err := send.Handle(ctx, chat.SendMessage{Sender: "carol", To: "shop", ClientMsgID: "x1", Body: "hi"})
	if err != nil || res.Message.Conv != svcConv {
		t.Fatalf("%+v %v", res, err)
	}
	waitFor(t, "assigned", func() bool { return f.agent(t, svcConv) == "ann" })
	if _, err := send.Handle(ctx, chat.SendMessage{Sender: "ann", Conv: string(svcConv), ClientMsgID: "x2", Body: "hello"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.box.bodies("carol"), "hello") {
		t.Fatal("carol did not get ann's reply")
	}
	page, err := hist.Handle(ctx, chat.History{Reader: "ann", Conv: string(svcConv)})
	if err != nil || len(page.Messages) != 3 {
		t.Fatalf("ann history %+v %v", page, err)
	}
	if _, err := hist.Handle(ctx, chat.History{Reader: "zed", Conv: string(svcConv)}); err != domain.ErrNotMember {
		t.Fatalf("zed history: %v", err)
	}
	// a direct send is unchanged
	if res, err := send.Handle(ctx, chat.SendMessage{Sender: "carol", To: "bob", ClientMsgID: "x3", Body: "hi"}); err != nil || res.Message.Conv != "d:bob~carol" {
		t.Fatalf("%+v %v", res, err)
	}
}
