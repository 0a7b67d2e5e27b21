package console

import "testing"

func TestEscaper(t *testing.T) {
	var e escaper
	r := e.filter([]byte("ls\r\x01"))
	if string(r.guest) != "ls\r" || r.quit {
		t.Fatalf("first chunk: %+v", r)
	}
	r = e.filter([]byte("\x01a\x01h\x01zb"))
	if string(r.guest) != "\x01ab" || !r.help || r.quit {
		t.Fatalf("second chunk: %+v", r)
	}
	r = e.filter([]byte("q\x01xrest"))
	if string(r.guest) != "q" || !r.quit {
		t.Fatalf("quit chunk: %+v", r)
	}
}
