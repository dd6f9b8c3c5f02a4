-- The shop: products with variants (a variant is what a SKU names and what
-- holds stock), orders with their lines, the email outbox and the ledger of
-- processed jobs. Indexes exist only where a query in jobs/ needs one.

CREATE TABLE products (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL,
  description text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE variants (
  id          bigserial PRIMARY KEY,
  product_id  bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
  sku         text NOT NULL UNIQUE,               -- GET /v1/products/{sku}, order lines
  name        text NOT NULL DEFAULT '',
  price_cents bigint NOT NULL CHECK (price_cents >= 0),
  stock       bigint NOT NULL CHECK (stock >= 0), -- never oversold, never negative
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- The product list joins variants by product; also serves the cascade.
CREATE INDEX variants_product_id ON variants (product_id);

CREATE TABLE orders (
  id              bigserial PRIMARY KEY,
  customer        text NOT NULL,
  status          text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'confirmed', 'rejected')),
  reason          text,
  idempotency_key text UNIQUE,                    -- POST /v1/orders replays
  total_cents     bigint,
  created_at      timestamptz NOT NULL DEFAULT now(),
  processed_at    timestamptz
);
-- GET /v1/orders?customer=...: a customer's recent orders.
CREATE INDEX orders_customer_created_at ON orders (customer, created_at DESC);

CREATE TABLE order_lines (
  order_id    bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  line_no     int NOT NULL,
  sku         text NOT NULL,
  qty         int NOT NULL CHECK (qty > 0),
  variant_id  bigint,                             -- resolved by order.process
  price_cents bigint,
  PRIMARY KEY (order_id, line_no)
);

CREATE TABLE email_outbox (
  id              bigserial PRIMARY KEY,
  order_id        bigint REFERENCES orders (id),
  recipient       text NOT NULL,
  template        text NOT NULL,
  data            jsonb NOT NULL DEFAULT '{}',
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
  attempts        int NOT NULL DEFAULT 0,
  last_error      text,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now(),
  sent_at         timestamptz,
  -- One confirmation per order, even if a handler bug tried twice.
  UNIQUE (order_id, template)
);
-- email.batch: the next pending rows that are due, oldest first.
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at, id) WHERE status = 'pending';

-- A job's effects and its ledger row commit together; a redelivered job finds
-- its row and acknowledges without doing anything again.
CREATE TABLE job_ledger (
  job_id       text PRIMARY KEY,
  job_name     text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now()
);
