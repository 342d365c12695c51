"""The client's management tree: standard objects, access types and status codes."""

from __future__ import annotations

from openscws.dm.tree import AppAuth, Tree, dm_account, find_auth, standard_tree


def make() -> Tree:
    tree = standard_tree(dev_id="IMEI:1", man="openscws", mod="virtual")
    dm_account(
        tree,
        "1",
        server_id="srv",
        addr="https://dm.example/",
        auth=(AppAuth("CLCRED", "DIGEST", "dev", "s3cret", b"n"),),
    )
    return tree


def test_standard_objects() -> None:
    tree = make()
    assert tree.get("./DevInfo/DmV").data == "1.2"
    assert tree.get("./DevInfo").data == "DevId/Man/Mod/DmV/Lang"
    assert tree.get("./DMAcc/1/AppID").data == "w7"
    assert tree.get("./DevDetail/URI/MaxDepth").data == "0"
    assert find_auth(tree, "1", "CLCRED") == "./DMAcc/1/AppAuth/1"
    assert find_auth(tree, "1", "SRVCRED") is None


def test_status_codes() -> None:
    tree = make()
    assert tree.get("./DMAcc/1/AppAuth/1/AAuthSecret").status == 405  # write-only secret
    assert tree.replace("./DMAcc/1/AppAuth/1/AAuthSecret", "new").status == 200
    assert tree.replace("./DevInfo/DevId", "x").status == 405  # read-only
    assert tree.get("./Nope").status == 404
    assert tree.get("./../etc").status == 404
    assert tree.add("./DMAcc/1/AppID", "x").status == 418
    assert tree.add("./Vendor/a", "x").status == 404  # no parent
    assert tree.add("./Vendor", fmt="node").status == 200
    assert tree.add("./Vendor/a", "x", fmt="weird").status == 406
    assert tree.add("./Vendor/a", "x").status == 200
    assert tree.copy("./Vendor/b", "./Vendor/a").status == 200
    assert tree.get("./Vendor/b").data == "x"
    assert tree.delete("./Vendor/a").status == 200
    assert tree.delete("./DevInfo/DevId").status == 405
    assert [p for p, _ in tree.walk("./Vendor")] == ["./Vendor", "./Vendor/b"]
