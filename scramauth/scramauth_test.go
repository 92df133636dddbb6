package scramauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

// pencilVerifier is what PostgreSQL 15 stored for PASSWORD 'pencil' with
// password_encryption = scram-sha-256.
const pencilVerifier = "SCRAM-SHA-256$4096:it0oB8/E0UztM9i9jFdLvw==$YwcI3o/kRtTQ6Un6yWmkyeb5WEQLLbU4N2ijIlWS/2I=:pCEM+niDvMRJubwLQ9Ea5sy/9YxHSu7uVyrfMwnFuz8="

func mustVerifier(t *testing.T, s string) *Verifier {
	t.Helper()
	v, err := ParseVerifier(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseVerifierReadsPostgreSQLsFormat(t *testing.T) {
	v := mustVerifier(t, pencilVerifier)
	if v.iterations != 4096 || len(v.salt) != 16 || v.String() != pencilVerifier {
		t.Fatalf("parsed %d iterations, %d-byte salt; String() = %s", v.iterations, len(v.salt), v)
	}
	// The verifier is what a client with the password derives.
	client, err := scram.SHA256.NewClient("", "pencil", "")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(v.salt), Iters: v.iterations})
	if err != nil {
		t.Fatal(err)
	}
	if string(sc.StoredKey) != string(v.storedKey) || string(sc.ServerKey) != string(v.serverKey) {
		t.Fatal("the verifier's keys are not those of the password")
	}
	for _, bad := range []string{
		"md5a3556571e93b0d20722ba62be61e8c2d",
		"",
		"SCRAM-SHA-256$4096:it0oB8/E0UztM9i9jFdLvw==",
		"SCRAM-SHA-256$x:it0oB8/E0UztM9i9jFdLvw==$YwcI3o/kRtTQ6Un6yWmkyeb5WEQLLbU4N2ijIlWS/2I=:pCEM+niDvMRJubwLQ9Ea5sy/9YxHSu7uVyrfMwnFuz8=",
		"SCRAM-SHA-256$0:it0oB8/E0UztM9i9jFdLvw==$YwcI3o/kRtTQ6Un6yWmkyeb5WEQLLbU4N2ijIlWS/2I=:pCEM+niDvMRJubwLQ9Ea5sy/9YxHSu7uVyrfMwnFuz8=",
		"SCRAM-SHA-256$4096:!!$YwcI3o/kRtTQ6Un6yWmkyeb5WEQLLbU4N2ijIlWS/2I=:pCEM+niDvMRJubwLQ9Ea5sy/9YxHSu7uVyrfMwnFuz8=",
		"SCRAM-SHA-256$4096:it0oB8/E0UztM9i9jFdLvw==$YwcI3o/kRtTQ6Un6:pCEM+niDvMRJubwLQ9Ea5sy/9YxHSu7uVyrfMwnFuz8=",
		"SCRAM-SHA-256$4096:it0oB8/E0UztM9i9jFdLvw==$YwcI3o/kRtTQ6Un6yWmkyeb5WEQLLbU4N2ijIlWS/2I=",
	} {
		_, err := ParseVerifier(bad)
		if err == nil {
			t.Errorf("%q parsed", bad)
			continue
		}
		if strings.Contains(err.Error(), "it0oB8") || strings.Contains(err.Error(), "YwcI3o") {
			t.Errorf("error quotes the secret: %v", err)
		}
	}
	if _, err := ParseVerifier("md5a3556571e93b0d20722ba62be61e8c2d"); !errors.Is(err, ErrNotSCRAM) {
		t.Errorf("md5 hash: %v, want ErrNotSCRAM", err)
	}
}

// selfSigned is a certificate signed with sig, for channel bindings.
func selfSigned(t *testing.T, sig x509.SignatureAlgorithm) *x509.Certificate {
	t.Helper()
	curve := elliptic.P256()
	if sig == x509.ECDSAWithSHA384 {
		curve = elliptic.P384()
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scramauth"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), SignatureAlgorithm: sig}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// clientLogin runs a client (xdg-go/scram, as a driver would) with
// password against x, choosing the mechanism and binding of mode:
// "n" (no binding), "y" (could bind, saw no -PLUS), "p" (SCRAM-SHA-256-PLUS
// bound to cert).
func clientLogin(t *testing.T, x *ServerExchange, password, mode string, cert *x509.Certificate) error {
	t.Helper()
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		// As libpq, PostgreSQL and NewVerifier: the raw password when
		// SASLprep refuses it.
		client, _ = scram.SHA256.NewClientUnprepped("", password, "")
	}
	mechanism := MechanismSHA256
	var conv *scram.ClientConversation
	switch mode {
	case "n":
		conv = client.NewConversation()
	case "y":
		conv = client.NewConversationAdvertisingChannelBinding()
	case "p":
		mechanism = MechanismSHA256Plus
		conv = client.NewConversationWithChannelBinding(ServerEndpoint(cert).cb)
	}
	c1, err := conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	s1, err := x.First(mechanism, []byte(c1))
	if err != nil {
		return err
	}
	c2, err := conv.Step(string(s1))
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Final([]byte(c2)); err != nil {
		return err
	}
	if _, err := conv.Step(string(x.ServerFinal())); err != nil {
		t.Fatalf("the client does not accept the proxy's server signature: %v", err)
	}
	return nil
}

// fakePostgreSQL is a SCRAM server (xdg-go/scram) standing for
// PostgreSQL, holding verifier v and offering SCRAM-SHA-256-PLUS bound to
// cert when cert is not nil.
func fakePostgreSQL(t *testing.T, v *Verifier, cert *x509.Certificate) (mechanisms []string, conv *scram.ServerConversation) {
	t.Helper()
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) {
		return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(v.salt), Iters: v.iterations}, StoredKey: v.storedKey, ServerKey: v.serverKey}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		return []string{MechanismSHA256Plus, MechanismSHA256}, srv.NewConversationWithChannelBinding(ServerEndpoint(cert).cb)
	}
	return []string{MechanismSHA256}, srv.NewConversation()
}

// startUpstream runs the proxy's ClientExchange up to PostgreSQL's
// server-first-message.
func startUpstream(t *testing.T, mechanisms []string, conv *scram.ServerConversation, cert *x509.Certificate) *ClientExchange {
	t.Helper()
	up, err := NewClientExchange(mechanisms, cert)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := conv.Step(string(up.First()))
	if err != nil {
		t.Fatalf("PostgreSQL rejects the client-first-message: %s %v", s1, err)
	}
	if err := up.ReadServerFirst([]byte(s1)); err != nil {
		t.Fatal(err)
	}
	return up
}

// finishUpstream proves creds to PostgreSQL.
func finishUpstream(up *ClientExchange, conv *scram.ServerConversation, creds *Credentials) error {
	c2, err := up.Final(creds)
	if err != nil {
		return err
	}
	s2, err := conv.Step(string(c2))
	if err != nil || !conv.Valid() {
		return &Error{Code: "28P01", Msg: "PostgreSQL rejected the proof: " + s2}
	}
	return up.Verify([]byte(s2))
}

func TestClientProvesRoleToPostgreSQLThroughTheProxy(t *testing.T) {
	v := mustVerifier(t, pencilVerifier)
	proxyCert := selfSigned(t, x509.ECDSAWithSHA256)
	pgCert := selfSigned(t, x509.ECDSAWithSHA384)
	for _, tc := range []struct {
		name, mode string
		clientTLS  bool
		upCert     *x509.Certificate
		wantMech   string
	}{
		{"plain both legs", "n", false, nil, MechanismSHA256},
		{"TLS to the proxy, client binds", "p", true, nil, MechanismSHA256},
		{"TLS to the proxy, client does not bind", "n", true, nil, MechanismSHA256},
		{"TLS both legs, bound both legs", "p", true, pgCert, MechanismSHA256Plus},
		{"TLS upstream only", "n", false, pgCert, MechanismSHA256Plus},
		{"client could bind, proxy without TLS", "y", false, pgCert, MechanismSHA256Plus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var binding *ChannelBinding
			if tc.clientTLS {
				binding = ServerEndpoint(proxyCert)
			}
			mechs, conv := fakePostgreSQL(t, v, tc.upCert)
			up := startUpstream(t, mechs, conv, tc.upCert)
			if !up.Matches(v) || up.Mechanism() != tc.wantMech {
				t.Fatalf("upstream: mechanism %s (want %s), salt matches %v", up.Mechanism(), tc.wantMech, up.Matches(v))
			}
			x := NewServerExchange(v, binding)
			if got := x.Mechanisms(); tc.clientTLS != (got[0] == MechanismSHA256Plus) {
				t.Fatalf("mechanisms offered %v", got)
			}
			if err := clientLogin(t, x, "pencil", tc.mode, proxyCert); err != nil {
				t.Fatalf("client login: %v", err)
			}
			if err := finishUpstream(up, conv, x.Credentials()); err != nil {
				t.Fatalf("upstream login: %v", err)
			}
		})
	}
}

func TestFailedExchangesGivePostgreSQLsErrors(t *testing.T) {
	v := mustVerifier(t, pencilVerifier)
	cert := selfSigned(t, x509.ECDSAWithSHA256)
	other := selfSigned(t, x509.ECDSAWithSHA256)
	code := func(err error) string {
		var e *Error
		if errors.As(err, &e) {
			return e.Code
		}
		return "none"
	}
	t.Run("wrong password", func(t *testing.T) {
		x := NewServerExchange(v, nil)
		if err := clientLogin(t, x, "pen", "n", nil); err != ErrWrongPassword || x.Credentials() != nil {
			t.Fatalf("%v", err)
		}
	})
	t.Run("unknown role: PostgreSQL's mock salt, any password fails", func(t *testing.T) {
		// PostgreSQL answers a role without a SCRAM verifier with a mock
		// salt of its own (here: a verifier no one has the password of).
		mechs, conv := fakePostgreSQL(t, mustVerifier(t, "SCRAM-SHA-256$8192:c29tZSBtb2NrIHNhbHQ=$"+strings.Repeat("A", 43)+"=:"+strings.Repeat("B", 43)+"="), nil)
		up := startUpstream(t, mechs, conv, nil)
		if up.Matches(v) {
			t.Fatal("another salt matches")
		}
		m := up.MockVerifier()
		if !up.Matches(m) || m.iterations != 8192 || string(m.salt) != "some mock salt" || m.Equal(up.MockVerifier()) {
			t.Fatalf("mock verifier %s: want PostgreSQL's salt and iterations, fresh keys", m)
		}
		for _, pw := range []string{"", "pencil", "nobody"} {
			if err := clientLogin(t, NewServerExchange(m, nil), pw, "n", nil); err != ErrWrongPassword {
				t.Fatalf("password %q: %v, want the wrong-password error", pw, err)
			}
		}
	})
	t.Run("downgrade: client could bind, -PLUS was offered", func(t *testing.T) {
		err := clientLogin(t, NewServerExchange(v, ServerEndpoint(cert)), "pencil", "y", nil)
		if code(err) != "08P01" || !strings.Contains(err.Error(), "negotiation") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("bound to another certificate", func(t *testing.T) {
		err := clientLogin(t, NewServerExchange(v, ServerEndpoint(cert)), "pencil", "p", other)
		if code(err) != "08P01" || !strings.Contains(err.Error(), "binding check failed") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("-PLUS without TLS", func(t *testing.T) {
		err := clientLogin(t, NewServerExchange(v, nil), "pencil", "p", cert)
		if code(err) != "08P01" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("mechanism and flag disagree", func(t *testing.T) {
		x := NewServerExchange(v, ServerEndpoint(cert))
		if _, err := x.First(MechanismSHA256, []byte("p=tls-server-end-point,,n=,r=abc")); code(err) != "08P01" {
			t.Fatalf("p flag with SCRAM-SHA-256: %v", err)
		}
		x = NewServerExchange(v, ServerEndpoint(cert))
		if _, err := x.First(MechanismSHA256Plus, []byte("n,,n=,r=abc")); code(err) != "08P01" {
			t.Fatalf("n flag with -PLUS: %v", err)
		}
		if _, err := NewServerExchange(v, nil).First("SCRAM-SHA-1", []byte("n,,n=,r=abc")); code(err) != "08P01" {
			t.Fatalf("unknown mechanism: %v", err)
		}
	})
	t.Run("malformed messages", func(t *testing.T) {
		for _, c1 := range []string{"", "n,,", "x,,n=,r=abc", "n,,m=x,n=,r=abc"} {
			if _, err := NewServerExchange(v, nil).First(MechanismSHA256, []byte(c1)); code(err) != "08P01" {
				t.Errorf("client-first %q: %v", c1, err)
			}
		}
		x := NewServerExchange(v, nil)
		if _, err := x.First(MechanismSHA256, []byte("n,,n=,r=abc")); err != nil {
			t.Fatal(err)
		}
		if err := x.Final([]byte("c=biws,r=abc,p=AAAA")); err == nil || x.Credentials() != nil {
			t.Fatalf("a client-final with the wrong nonce and a short proof: %v", err)
		}
	})
	t.Run("a verifier PostgreSQL no longer holds", func(t *testing.T) {
		client, _ := scram.SHA256.NewClient("", "pencil2", "")
		sc, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: "another salt", Iters: 4096})
		if err != nil {
			t.Fatal(err)
		}
		changed := &Verifier{iterations: 4096, salt: []byte("another salt"), storedKey: sc.StoredKey, serverKey: sc.ServerKey}
		mechs, conv := fakePostgreSQL(t, changed, nil)
		up := startUpstream(t, mechs, conv, nil)
		x := NewServerExchange(v, nil) // the stale verifier the proxy looked up
		if err := clientLogin(t, x, "pencil", "n", nil); err != nil {
			t.Fatal(err)
		}
		if up.Matches(v) {
			t.Fatal("a stale verifier matches")
		}
		if _, err := up.Final(x.Credentials()); err != ErrVerifierChanged {
			t.Fatalf("%v, want ErrVerifierChanged", err)
		}
	})
	t.Run("PostgreSQL's messages are checked", func(t *testing.T) {
		x := NewServerExchange(v, nil)
		if err := clientLogin(t, x, "pencil", "n", nil); err != nil {
			t.Fatal(err)
		}
		up, err := NewClientExchange([]string{MechanismSHA256}, nil)
		if err != nil {
			t.Fatal(err)
		}
		nonce := strings.TrimPrefix(string(up.First()), "n,,n=,r=")
		if err := up.ReadServerFirst([]byte("r=" + nonce + "srv,s=it0oB8/E0UztM9i9jFdLvw==,i=4096")); err != nil {
			t.Fatal(err)
		}
		if _, err := up.Final(x.Credentials()); err != nil {
			t.Fatal(err)
		}
		if err := up.Verify([]byte("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")); code(err) != "08P01" {
			t.Fatalf("a wrong server signature: %v", err)
		}
		for _, s1 := range []string{"r=" + nonce + ",s=it0oB8/E0UztM9i9jFdLvw==,i=4096", "r=other,s=it0oB8/E0UztM9i9jFdLvw==,i=4096",
			"r=" + nonce + "x,s=,i=4096", "r=" + nonce + "x,s=it0oB8/E0UztM9i9jFdLvw==,i=0", "s=x,r=y,i=1", "e=other-error"} {
			up, _ := NewClientExchange([]string{MechanismSHA256}, nil)
			if err := up.ReadServerFirst([]byte(s1)); code(err) != "08P01" {
				t.Errorf("server-first %q: %v", s1, err)
			}
		}
		fresh, _ := NewClientExchange([]string{MechanismSHA256}, nil)
		if _, err := fresh.Final(x.Credentials()); err == nil {
			t.Error("Final before the server-first-message")
		}
	})
	t.Run("authorization identity", func(t *testing.T) {
		if _, err := NewServerExchange(v, nil).First(MechanismSHA256, []byte("n,a=postgres,n=,r=abc")); code(err) != "08P01" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("no usable mechanism upstream", func(t *testing.T) {
		if Usable([]string{"OAUTHBEARER"}, cert) || Usable([]string{MechanismSHA256Plus}, nil) ||
			!Usable([]string{MechanismSHA256Plus}, cert) || !Usable([]string{"OAUTHBEARER", MechanismSHA256}, nil) {
			t.Fatal("Usable disagrees with Upstream")
		}
		if _, err := NewClientExchange([]string{"OAUTHBEARER"}, nil); code(err) != "28000" {
			t.Fatalf("%v", err)
		}
		if _, err := NewClientExchange([]string{MechanismSHA256Plus}, nil); code(err) != "28000" {
			t.Fatalf("only -PLUS without TLS: %v", err)
		}
	})
}

func TestNewVerifierChecksItsPassword(t *testing.T) {
	for _, pw := range []string{"pencil", "pass wörd", "\u2168 roman nine", "\x01 control"} {
		v, err := NewVerifier(pw)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseVerifier(v.String())
		if err != nil || !again.Equal(v) || v.iterations != 4096 || len(v.salt) != 16 {
			t.Fatalf("%q: %s does not read back as itself (%v)", pw, v, err)
		}
		if err := clientLogin(t, NewServerExchange(v, nil), pw, "n", nil); err != nil {
			t.Errorf("%q: the password does not log in against its verifier: %v", pw, err)
		}
		if err := clientLogin(t, NewServerExchange(v, nil), pw+"x", "n", nil); err != ErrWrongPassword {
			t.Errorf("%q: another password: %v", pw, err)
		}
		if w, _ := NewVerifier(pw); w.Equal(v) {
			t.Errorf("%q: two verifiers with one salt", pw)
		}
	}
}
