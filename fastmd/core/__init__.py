"""fastmd's sans-I/O core: every Binance protocol rule, fed bytes and an injected clock.

Nothing here imports asyncio, picows or aiohttp (a test enforces it); the asyncio shell feeds the
core and executes what it asks for.
"""
