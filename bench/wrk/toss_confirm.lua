-- POST each prepared window's confirm straight to the Toss stand-in once (the stand-in alone).
-- Args: the file of success paths (/…?paymentType&orderId&paymentKey&amount), the number of wrk
-- threads, the Authorization header. Thread k takes lines k, k+T, …; a thread out of lines
-- sends fillers (GET, answered 405, not counted) until it stops. `counted` = confirm answers,
-- `bad` = those that were not 200 (the first few are printed as BAD lines).
local bodies = {}
local sent = 0
local auth
counted = 0
bad = 0

local function param(query, name)
  return query:match("[?&]" .. name .. "=([^&]*)")
end

function init(args)
  local nthreads = tonumber(args[2])
  auth = args[3]
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then
      table.insert(bodies, string.format('{"paymentKey":"%s","orderId":"%s","amount":%s}',
        param(line, "paymentKey"), param(line, "orderId"), param(line, "amount")))
    end
    i = i + 1
  end
end

function request()
  sent = sent + 1
  if sent > #bodies then
    wrk.thread:stop()
    return wrk.format("GET", "/sandbox/v1/payments/confirm") -- a filler: 405
  end
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = auth,
  }, bodies[sent])
end

function response(status, headers, body)
  if status == 405 then
    return -- a filler
  end
  counted = counted + 1
  if status ~= 200 then
    bad = bad + 1
    if bad <= 3 then
      io.write("BAD ", status, " ", (body:sub(1, 200):gsub("%s+", " ")), "\n")
    end
  end
  if counted >= #bodies then
    wrk.thread:stop()
  end
end
