package metrics

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hlsvmm/hlsvmm/console"
	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/metrics/exits"
	"github.com/hlsvmm/hlsvmm/virtio/blk"
	vnet "github.com/hlsvmm/hlsvmm/virtio/net"
	"github.com/hlsvmm/hlsvmm/virtio/ninep"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// fakeVM holds counters the way the components do; the registry reads
// them through closures on each scrape.
type fakeVM struct {
	vcpus   []exits.Counters
	net     vnet.Metrics
	net1    vnet.Metrics // a vhost-net device: only its control counters
	blk     blk.Metrics
	share   ninep.Metrics
	console atomic.Pointer[console.Stats]
}

func newFakeVM(vcpus int) *fakeVM {
	f := &fakeVM{vcpus: make([]exits.Counters, vcpus)}
	f.console.Store(&console.Stats{})
	return f
}

func (f *fakeVM) exits() []exits.Snapshot {
	s := make([]exits.Snapshot, len(f.vcpus))
	for i := range f.vcpus {
		s[i] = f.vcpus[i].Snapshot()
	}
	return s
}

func (f *fakeVM) register(t *testing.T, r *Registry) {
	t.Helper()
	for _, err := range []error{
		r.SetVCPUExits(f.exits),
		r.AddNet(NetDevice{Name: "net0", Datapath: DatapathUserspace, Snapshot: f.net.Snapshot}),
		r.AddNet(NetDevice{Name: "net1", Datapath: DatapathVhostNet, Control: f.net1.ControlSnapshot}),
		r.AddBlock(BlockDevice{Name: "blk0", Snapshot: f.blk.Snapshot}),
		r.AddShare(ShareDevice{Name: "9p0", Tag: "ro-store", Snapshot: f.share.Snapshot}),
		r.SetConsole(func() console.Stats { return *f.console.Load() }),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func listen(t *testing.T, r *Registry) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", r, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches /metrics and returns the families parsed from the text
// format.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, "http://"+s.Addr().String()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// series renders a family's samples as sorted `{label="v",...} value` lines.
func series(f *dto.MetricFamily) []string {
	var out []string
	for _, m := range f.GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		var v float64
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		default:
			v = m.GetUntyped().GetValue()
		}
		out = append(out, fmt.Sprintf("{%s} %g", strings.Join(ls, ","), v))
	}
	slices.Sort(out)
	return out
}

// checkVM compares every hlsvmm_ family with want (family name → its
// series) and their types; families not in want must not exist.
func checkVM(t *testing.T, fams map[string]*dto.MetricFamily, want map[string][]string) {
	t.Helper()
	for name, f := range fams {
		if !strings.HasPrefix(name, "hlsvmm_") {
			continue
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("unexpected family %s: %v", name, series(f))
			continue
		}
		wantType := dto.MetricType_COUNTER
		if !strings.HasSuffix(name, "_total") {
			wantType = dto.MetricType_GAUGE
		}
		if f.GetType() != wantType {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), wantType)
		}
		slices.Sort(w)
		if got := series(f); !slices.Equal(got, w) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, w)
		}
	}
	for name := range want {
		if fams[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
}

func TestScrape(t *testing.T) {
	f := newFakeVM(2)
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	f.register(t, r)
	s := listen(t, r)
	if _, err := r.Gatherer().Gather(); err != nil {
		t.Fatalf("gather: %v", err) // metrics inconsistent with their descriptions
	}

	// Before anything happened: counters at zero, the frequent exit
	// reasons present from the start, vhost-net only as info.
	checkVM(t, scrape(t, s), map[string][]string{
		"hlsvmm_vcpu_exits_total": {
			`{reason="io",vcpu="0"} 0`, `{reason="mmio",vcpu="0"} 0`, `{reason="intr",vcpu="0"} 0`,
			`{reason="io",vcpu="1"} 0`, `{reason="mmio",vcpu="1"} 0`, `{reason="intr",vcpu="1"} 0`,
		},
		"hlsvmm_net_datapath_info":      {`{datapath="userspace",device="net0"} 1`, `{datapath="vhost-net",device="net1"} 1`},
		"hlsvmm_net_rx_packets_total":   {`{datapath="userspace",device="net0"} 0`},
		"hlsvmm_net_queue_pairs_active": {`{device="net1"} 0`},
		"hlsvmm_net_control_commands_total": {
			`{class="rx",device="net1",result="ok"} 0`, `{class="rx",device="net1",result="err"} 0`,
			`{class="mac",device="net1",result="ok"} 0`, `{class="mac",device="net1",result="err"} 0`,
			`{class="mq",device="net1",result="ok"} 0`, `{class="mq",device="net1",result="err"} 0`,
			`{class="other",device="net1",result="ok"} 0`, `{class="other",device="net1",result="err"} 0`,
		},
		"hlsvmm_net_rx_bytes_total":   {`{datapath="userspace",device="net0"} 0`},
		"hlsvmm_net_tx_packets_total": {`{datapath="userspace",device="net0"} 0`},
		"hlsvmm_net_tx_bytes_total":   {`{datapath="userspace",device="net0"} 0`},
		"hlsvmm_net_drops_total": {
			`{datapath="userspace",device="net0",direction="rx"} 0`, `{datapath="userspace",device="net0",direction="tx"} 0`,
		},
		"hlsvmm_net_tap_errors_total": {
			`{datapath="userspace",device="net0",op="read"} 0`, `{datapath="userspace",device="net0",op="write"} 0`,
		},
		"hlsvmm_virtio_queue_kicks_total": {
			`{device="net0",queue="rx"} 0`, `{device="net0",queue="tx"} 0`, `{device="blk0",queue="all"} 0`,
			`{device="9p0",queue="all"} 0`,
		},
		"hlsvmm_virtio_queue_interrupts_total": {
			`{device="net0",queue="all"} 0`, `{device="blk0",queue="all"} 0`, `{device="9p0",queue="all"} 0`,
		},
		"hlsvmm_virtio_malformed_chains_total": {`{device="net0"} 0`, `{device="blk0"} 0`, `{device="9p0"} 0`},
		"hlsvmm_block_requests_total": {
			`{device="blk0",op="read"} 0`, `{device="blk0",op="write"} 0`, `{device="blk0",op="flush"} 0`, `{device="blk0",op="get_id"} 0`,
		},
		"hlsvmm_block_errors_total":          {`{device="blk0",status="ioerr"} 0`, `{device="blk0",status="unsupp"} 0`},
		"hlsvmm_block_read_bytes_total":      {`{device="blk0"} 0`},
		"hlsvmm_block_written_bytes_total":   {`{device="blk0"} 0`},
		"hlsvmm_9p_requests_total":           {`{device="9p0",tag="ro-store"} 0`},
		"hlsvmm_9p_errors_total":             {`{device="9p0",tag="ro-store"} 0`},
		"hlsvmm_9p_read_bytes_total":         {`{device="9p0",tag="ro-store"} 0`},
		"hlsvmm_9p_requests_in_flight":       {`{device="9p0",tag="ro-store"} 0`},
		"hlsvmm_console_clients":             {`{} 0`},
		"hlsvmm_console_connections_total":   {`{} 0`},
		"hlsvmm_console_dropped_bytes_total": {`{} 0`},
	})

	// The components count; the next scrape reads the new values.
	for range 5 {
		f.vcpus[0].Add(uapi.KVM_EXIT_IO)
	}
	f.vcpus[0].Add(uapi.KVM_EXIT_MMIO)
	f.vcpus[1].Add(uapi.KVM_EXIT_HLT)
	f.vcpus[1].Add(uapi.KVM_EXIT_IO)
	f.vcpus[1].Add(1000) // a reason newer than this build
	f.net.RxPackets.Add(7)
	f.net.RxBytes.Add(7000)
	f.net.RxDrops.Add(2)
	f.net.RxKicks.Add(3)
	f.net.TxPackets.Add(11)
	f.net.TxBytes.Add(1 << 40) // beyond 32 bits
	f.net.TxDrops.Add(1)
	f.net.TxKicks.Add(9)
	f.net.Interrupts.Add(13)
	f.net.MalformedChains.Add(1)
	f.net.TapReadErrors.Add(4)
	f.net.TapWriteErrors.Add(5)
	f.net1.ActivePairs.Store(3)
	f.net1.CtrlOK[vnet.CtrlClassMQ].Add(2)
	f.net1.CtrlOK[vnet.CtrlClassRX].Add(5)
	f.net1.CtrlErr[vnet.CtrlClassMAC].Add(1)
	f.net1.CtrlErr[vnet.CtrlClassOther].Add(4)
	f.blk.Reads.Add(20)
	f.blk.Writes.Add(1)
	f.blk.Flushes.Add(2)
	f.blk.GetIDs.Add(3)
	f.blk.ReadBytes.Add(20 * 4096)
	f.blk.WriteBytes.Add(512)
	f.blk.Errors.Add(6)
	f.blk.Unsupported.Add(8)
	f.blk.Kicks.Add(17)
	f.blk.Interrupts.Add(18)
	f.share.Requests.Add(40)
	f.share.Errors.Add(3)
	f.share.ReadBytes.Add(5 << 30)
	f.share.InFlight.Add(4)
	f.share.Kicks.Add(21)
	f.share.Interrupts.Add(22)
	f.share.MalformedChains.Add(1)
	f.console.Store(&console.Stats{Connections: 3, Connected: true, Dropped: 4096})

	checkVM(t, scrape(t, s), map[string][]string{
		"hlsvmm_vcpu_exits_total": {
			`{reason="io",vcpu="0"} 5`, `{reason="mmio",vcpu="0"} 1`, `{reason="intr",vcpu="0"} 0`,
			`{reason="io",vcpu="1"} 1`, `{reason="mmio",vcpu="1"} 0`, `{reason="intr",vcpu="1"} 0`,
			`{reason="hlt",vcpu="1"} 1`, `{reason="other",vcpu="1"} 1`,
		},
		"hlsvmm_net_datapath_info":      {`{datapath="userspace",device="net0"} 1`, `{datapath="vhost-net",device="net1"} 1`},
		"hlsvmm_net_rx_packets_total":   {`{datapath="userspace",device="net0"} 7`},
		"hlsvmm_net_queue_pairs_active": {`{device="net1"} 3`},
		"hlsvmm_net_control_commands_total": {
			`{class="rx",device="net1",result="ok"} 5`, `{class="rx",device="net1",result="err"} 0`,
			`{class="mac",device="net1",result="ok"} 0`, `{class="mac",device="net1",result="err"} 1`,
			`{class="mq",device="net1",result="ok"} 2`, `{class="mq",device="net1",result="err"} 0`,
			`{class="other",device="net1",result="ok"} 0`, `{class="other",device="net1",result="err"} 4`,
		},
		"hlsvmm_net_rx_bytes_total":   {`{datapath="userspace",device="net0"} 7000`},
		"hlsvmm_net_tx_packets_total": {`{datapath="userspace",device="net0"} 11`},
		"hlsvmm_net_tx_bytes_total":   {`{datapath="userspace",device="net0"} 1.099511627776e+12`},
		"hlsvmm_net_drops_total": {
			`{datapath="userspace",device="net0",direction="rx"} 2`, `{datapath="userspace",device="net0",direction="tx"} 1`,
		},
		"hlsvmm_net_tap_errors_total": {
			`{datapath="userspace",device="net0",op="read"} 4`, `{datapath="userspace",device="net0",op="write"} 5`,
		},
		"hlsvmm_virtio_queue_kicks_total": {
			`{device="net0",queue="rx"} 3`, `{device="net0",queue="tx"} 9`, `{device="blk0",queue="all"} 17`,
			`{device="9p0",queue="all"} 21`,
		},
		"hlsvmm_virtio_queue_interrupts_total": {
			`{device="net0",queue="all"} 13`, `{device="blk0",queue="all"} 18`, `{device="9p0",queue="all"} 22`,
		},
		"hlsvmm_virtio_malformed_chains_total": {`{device="net0"} 1`, `{device="blk0"} 0`, `{device="9p0"} 1`},
		"hlsvmm_block_requests_total": {
			`{device="blk0",op="read"} 20`, `{device="blk0",op="write"} 1`, `{device="blk0",op="flush"} 2`, `{device="blk0",op="get_id"} 3`,
		},
		"hlsvmm_block_errors_total":          {`{device="blk0",status="ioerr"} 6`, `{device="blk0",status="unsupp"} 8`},
		"hlsvmm_block_read_bytes_total":      {`{device="blk0"} 81920`},
		"hlsvmm_block_written_bytes_total":   {`{device="blk0"} 512`},
		"hlsvmm_9p_requests_total":           {`{device="9p0",tag="ro-store"} 40`},
		"hlsvmm_9p_errors_total":             {`{device="9p0",tag="ro-store"} 3`},
		"hlsvmm_9p_read_bytes_total":         {`{device="9p0",tag="ro-store"} 5.36870912e+09`},
		"hlsvmm_9p_requests_in_flight":       {`{device="9p0",tag="ro-store"} 4`},
		"hlsvmm_console_clients":             {`{} 1`},
		"hlsvmm_console_connections_total":   {`{} 3`},
		"hlsvmm_console_dropped_bytes_total": {`{} 4096`},
	})
}

func TestProcessAndGoMetrics(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, listen(t, r))
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
	// Nothing added: no VM families, and no error either.
	for name := range fams {
		if strings.HasPrefix(name, "hlsvmm_") {
			t.Errorf("empty registry exports %s", name)
		}
	}
}

// A second registry in the same process works: nothing is registered
// globally.
func TestRegistriesAreIndependent(t *testing.T) {
	a, b := newFakeVM(1), newFakeVM(1)
	ra, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	rb, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	a.register(t, ra)
	b.register(t, rb)
	a.vcpus[0].Add(uapi.KVM_EXIT_IO)
	for i, g := range []*Registry{ra, rb} {
		fams, err := g.Gatherer().Gather()
		if err != nil {
			t.Fatalf("registry %d: %v", i, err)
		}
		for _, f := range fams {
			if f.GetName() == "hlsvmm_vcpu_exits_total" {
				if got, want := series(f)[0], `{reason="intr",vcpu="0"} 0`; got != want {
					t.Errorf("registry %d: %s, want %s", i, got, want)
				}
				if got, want := series(f)[1], fmt.Sprintf(`{reason="io",vcpu="0"} %d`, 1-i); got != want {
					t.Errorf("registry %d: %s, want %s", i, got, want)
				}
			}
		}
	}
}

func TestSourceErrors(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	var m blk.Metrics
	var sm ninep.Metrics
	if err := r.AddNet(NetDevice{Name: "net0", Datapath: DatapathVhostNet}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetVCPUExits(func() []exits.Snapshot { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := r.SetConsole(func() console.Stats { return console.Stats{} }); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"duplicate net":        r.AddNet(NetDevice{Name: "net0", Datapath: DatapathUserspace}),
		"block named as a net": r.AddBlock(BlockDevice{Name: "net0", Snapshot: m.Snapshot}),
		"no name":              r.AddNet(NetDevice{Datapath: DatapathUserspace}),
		"no datapath":          r.AddNet(NetDevice{Name: "net1"}),
		"block no snapshot":    r.AddBlock(BlockDevice{Name: "blk0"}),
		"block no name":        r.AddBlock(BlockDevice{Snapshot: m.Snapshot}),
		"9p named as a net":    r.AddShare(ShareDevice{Name: "net0", Tag: "store", Snapshot: sm.Snapshot}),
		"9p no snapshot":       r.AddShare(ShareDevice{Name: "9p0", Tag: "store"}),
		"9p no tag":            r.AddShare(ShareDevice{Name: "9p0", Snapshot: sm.Snapshot}),
		"9p no name":           r.AddShare(ShareDevice{Tag: "store", Snapshot: sm.Snapshot}),
		"second vcpu source":   r.SetVCPUExits(func() []exits.Snapshot { return nil }),
		"nil vcpu source":      r.SetVCPUExits(nil),
		"second console":       r.SetConsole(func() console.Stats { return console.Stats{} }),
		"nil console":          r.SetConsole(nil),
	} {
		if !errors.Is(err, ErrSource) {
			t.Errorf("%s: err = %v, want ErrSource", name, err)
		}
	}
	// The failed adds left nothing behind: one device, one datapath.
	fams, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "hlsvmm_net_datapath_info" {
			if got := series(f); !slices.Equal(got, []string{`{datapath="vhost-net",device="net0"} 1`}) {
				t.Errorf("datapath info: %q", got)
			}
		}
		if strings.HasPrefix(f.GetName(), "hlsvmm_block_") || strings.HasPrefix(f.GetName(), "hlsvmm_9p_") {
			t.Errorf("failed AddBlock or AddShare exported %s", f.GetName())
		}
	}
}

// Devices are added while the server already runs (it listens before
// boot); adding during scrapes is safe.
func TestAddWhileScraping(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	s := listen(t, r)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20 {
			var m vnet.Metrics
			if err := r.AddNet(NetDevice{Name: fmt.Sprintf("net%d", i), Datapath: DatapathUserspace, Snapshot: m.Snapshot}); err != nil {
				t.Error(err)
			}
		}
	}()
	for range 5 {
		scrape(t, s)
	}
	wg.Wait()
	if got := len(scrape(t, s)["hlsvmm_net_datapath_info"].GetMetric()); got != 20 {
		t.Fatalf("%d devices exported, want 20", got)
	}
}

func TestIndexPage(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	s := listen(t, r)
	code, body := get(t, "http://"+s.Addr().String()+"/")
	if code != http.StatusOK || !strings.Contains(body, `href="/metrics"`) {
		t.Fatalf("GET /: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+s.Addr().String()+"/nothing"); code != http.StatusNotFound {
		t.Fatalf("GET /nothing: %d, want 404", code)
	}
}

func TestDebugPages(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	s := listen(t, r)
	base := "http://" + s.Addr().String()
	if code, _ := get(t, base+"/debug/virtio"); code != http.StatusNotFound {
		t.Fatalf("GET /debug/virtio before HandleDebug: %d, want 404", code)
	}
	calls := 0
	s.HandleDebug("virtio", func() any {
		calls++
		return []struct {
			Slot string `json:"slot"`
		}{{Slot: fmt.Sprintf("00:%02x.0", calls)}}
	})
	for i := 1; i <= 2; i++ {
		code, body := get(t, base+"/debug/virtio")
		if want := fmt.Sprintf(`"slot": "00:%02x.0"`, i); code != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("GET /debug/virtio #%d: %d %q, want %s", i, code, body, want)
		}
	}
	code, body := get(t, base+"/debug/pprof/goroutine?debug=2")
	if code != http.StatusOK || !strings.Contains(body, "goroutine ") {
		t.Fatalf("GET goroutine dump: %d %.200q", code, body)
	}
}

func TestListenPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(taken.Addr().String(), r, nil)
	if err == nil {
		s.Close()
		t.Fatal("Listen on a taken port succeeded")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("err = %v, want EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Errorf("error does not name the address: %v", err)
	}
}

func TestListenBadAddress(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for addr, malformed := range map[string]bool{"": true, "17190": true, "127.0.0.1": true, "127.0.0.1:": true, "[::1:80": true, "127.0.0.1:http-nope": false} {
		s, err := Listen(addr, r, nil)
		switch {
		case err == nil:
			s.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		case errors.Is(err, ErrAddress) != malformed:
			t.Errorf("Listen(%q): %v; ErrAddress %v, want %v", addr, err, errors.Is(err, ErrAddress), malformed)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("Listen(%q): multi-line error %q", addr, err)
		}
	}
	if _, err := Listen("127.0.0.1:0", nil, nil); err == nil {
		t.Error("Listen with a nil registry succeeded")
	}
}

func TestCloseIdempotent(t *testing.T) {
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen("127.0.0.1:0", r, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	scrape(t, s)
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	select {
	case <-s.done:
	default:
		t.Fatal("serve goroutine still running after Close")
	}
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Fatal("server still answers after Close")
	}
	// The port is free again.
	s2, err := Listen(addr, r, nil)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	s2.Close()
}
