-- GET each prepared success URL once (/checkout/success?paymentType&orderId&paymentKey&amount),
-- as the shopper's browser does when Toss's window redirects back: the server confirms with the
-- Toss stand-in and answers 303 to /orders/<orderId>. The product and both peers serve it.
-- Args: the file of success paths, the number of wrk threads. Thread k takes lines k, k+T, …;
-- a thread that has used all of its lines stops (a few /healthz fillers may go out meanwhile and
-- are not counted). `counted` = confirmation answers; `bad` = those that were not a 303 to
-- /orders/<orderId> (a failed or refused confirmation; the first few are printed as BAD lines).
local paths = {}
local sent = 0
counted = 0
bad = 0

function init(args)
  local nthreads = tonumber(args[2])
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then
      table.insert(paths, line)
    end
    i = i + 1
  end
end

function request()
  sent = sent + 1
  if sent > #paths then
    wrk.thread:stop()
    return wrk.format("GET", "/healthz")
  end
  return wrk.format("GET", paths[sent])
end

function response(status, headers, body)
  if status == 200 and body:find('"ok"', 1, true) then
    return -- a /healthz filler
  end
  local location = headers["Location"] or headers["location"] or ""
  counted = counted + 1
  if status ~= 303 or not location:find("/orders/", 1, true) then
    bad = bad + 1
    if bad <= 3 then
      io.write("BAD ", status, " ", location, " ", (body:sub(1, 200):gsub("%s+", " ")), "\n")
    end
  end
  if counted >= #paths then
    wrk.thread:stop()
  end
end
