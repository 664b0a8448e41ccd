// The Express peer: the confirmation the way Toss's official sample server does it — the success
// URL's paymentKey, orderId and amount go to Toss's confirm with one `fetch`, then one insert of
// the answer through `pg` — and a 303 to /orders/<orderId>, as the product answers.
// Env: PORT, TOSS_API_BASE (…/v1/payments/confirm under it), TOSS_SECRET_KEY, DATABASE_URL (a
// PostgreSQL database with the table express_confirms, which bench/run.py creates).
const express = require("express");
const { Pool } = require("pg");

const tossBase = process.env.TOSS_API_BASE.replace(/\/$/, "");
const authorization = "Basic " + Buffer.from(`${process.env.TOSS_SECRET_KEY}:`).toString("base64");
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 20 });
const app = express();

app.get("/healthz", (req, res) => res.json({ status: "ok" }));

app.get("/checkout/success", async (req, res) => {
  const { paymentKey, orderId, amount } = req.query;
  try {
    const response = await fetch(`${tossBase}/v1/payments/confirm`, {
      method: "POST",
      headers: { Authorization: authorization, "Content-Type": "application/json" },
      body: JSON.stringify({ paymentKey, orderId, amount: Number(amount) }),
    });
    const payment = await response.json();
    if (!response.ok) {
      res.status(response.status).json(payment);
      return;
    }
    await pool.query(
      "INSERT INTO express_confirms (order_id, payment_key, status, payment, created_at) " +
        "VALUES ($1, $2, $3, $4, now())",
      [orderId, payment.paymentKey, payment.status, JSON.stringify(payment)],
    );
    res.redirect(303, `/orders/${encodeURIComponent(orderId)}`);
  } catch (err) {
    res.status(500).json({ code: "INTERNAL", message: String(err) });
  }
});

app.listen(Number(process.env.PORT), "127.0.0.1");
