"""asyncio shells: the card links, the BIP gateway's sockets, the card process."""
