-- POST a distinct PAYMENT_STATUS_CHANGED webhook per request (its own transmission id, so the
-- inbox stores each one). The bare insert gets the very same requests.
-- Args: a run id (keeps ids unique across runs against one database).
local prefix
local n = 0

function init(args)
  prefix = (args[1] or "run") .. "t" .. tostring(tid)
end

function request()
  n = n + 1
  local id = prefix .. "n" .. tostring(n)
  local body = '{"eventType":"PAYMENT_STATUS_CHANGED","createdAt":"2026-11-22T10:00:00.000000",' ..
    '"data":{"paymentKey":"tbench' .. id .. '","orderId":"bench-' .. id .. '",' ..
    '"status":"DONE","totalAmount":39000}}'
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["tosspayments-webhook-transmission-id"] = "whtrans_" .. id,
    ["tosspayments-webhook-transmission-time"] = "2026-11-22T10:00:00+09:00",
  }, body)
end
