"""Opens N concurrent LL-HLS blocking playlist reloads (_HLS_msn = the segment after the
newest part's) against one media playlist and waits for all answers; prints the status
counts. Used by bench/origin_flood.sh."""
import asyncio
import collections
import re
import sys
import urllib.request


async def reload(host, port, path, msn):
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET {path}?_HLS_msn={msn}&_HLS_part=0 HTTP/1.1\r\nHost: {host}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return answer.split(b" ", 2)[1].decode()
    except OSError as error:
        return type(error).__name__


async def main(url, count):
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    text = urllib.request.urlopen(url).read().decode()
    newest = max(int(msn) for msn in re.findall(r'URI="(\d+)\.\d+\.m4s"', text))
    answers = await asyncio.gather(
        *(reload(host, int(port), path, newest + 1) for _ in range(count))
    )
    print(dict(collections.Counter(answers)))


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
