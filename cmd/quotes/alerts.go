package main

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/quotesdev/quotes/alert"
)

// alertsTestOptions are the flags of `quotes alerts test`.
type alertsTestOptions struct {
	alerts  alertOptions
	timeout time.Duration
}

// newAlertsCmd builds `quotes alerts` with its subcommand test.
func newAlertsCmd(_ *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "Set up hot-event alerts (NATS JetStream, webhooks)",
		Long: `Hot events are delivered to alert sinks by ingest and replay with --alerts-nats and
--alerts-webhook: durably, from the outbox in --data, like ClickHouse. A broker or receiver
that is down never stops ingest; the backlog waits on disk.

NATS JetStream: each event is published as JSON (the HTTP API's /hot object) with
Nats-Msg-Id = event id, into a stream that captures the subject (created if missing, with
a 24 h duplicate window): redelivery after a crash is exactly once within that window.

Webhooks: each event is POSTed as JSON with Idempotency-Key: <event id> and
X-Quotes-Signature: sha256=<hex HMAC-SHA256 of the body with --alerts-webhook-secret>.
2xx is delivered; 429, 5xx and timeouts are retried with capped backoff and jitter (the same
body every time); other 4xx answers are counted as rejected and not retried. Order is kept.
Delivery is at least once: use the Idempotency-Key to drop repeats.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAlertsTestCmd())
	return cmd
}

func newAlertsTestCmd() *cobra.Command {
	o := &alertsTestOptions{}
	cmd := &cobra.Command{
		Use:   "test --alerts-webhook URL --alerts-webhook-secret SECRET",
		Short: "Send one signed sample event to a webhook and print the response",
		Example: `  quotes alerts test --alerts-webhook https://alerts.example.com/quotes --alerts-webhook-secret s3cret
  QUOTES_ALERTS_WEBHOOK_SECRET=s3cret quotes alerts test --alerts-webhook http://127.0.0.1:9090/hook`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.alerts.webhooks) == 0 {
				return usagef("--alerts-webhook URL is required")
			}
			if _, err := o.alerts.options(); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			failed := 0
			for _, u := range o.alerts.webhooks {
				resp, err := alert.SendTest(cmd.Context(), alert.WebhookOptions{URL: u, Secret: []byte(o.alerts.secret), Timeout: o.timeout})
				if err != nil {
					return fmt.Errorf("alerts test %s: %w", u, err)
				}
				fmt.Fprintf(out, "POST %s\n", u)
				fmt.Fprintf(out, "X-Quotes-Signature: %s\n%s\n\n", resp.Signature, resp.Payload)
				fmt.Fprintf(out, "HTTP %d %s\n", resp.Status, http.StatusText(resp.Status))
				keys := make([]string, 0, len(resp.Header))
				for k := range resp.Header {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					for _, v := range resp.Header[k] {
						fmt.Fprintf(out, "%s: %s\n", k, escapeText(v, 200))
					}
				}
				fmt.Fprintf(out, "\n%s\n", escapeText(string(resp.Body), 2000))
				if !resp.Delivered {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d webhooks did not answer 2xx: the sink would retry (429, 5xx) or reject (other 4xx) such events", failed, len(o.alerts.webhooks))
			}
			return nil
		},
	}
	o.alerts.bindWebhook(cmd.Flags())
	cmd.Flags().DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the answer")
	return cmd
}
