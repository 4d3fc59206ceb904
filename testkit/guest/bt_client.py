#!/usr/bin/python3
# Another Bluetooth device in the guest ($BT_CLIENT, default hci1), driven through bluetoothd
# over D-Bus:
#   bt_client.py discover SECONDS   find hci0 (prints FOUND or NOT_FOUND)
#   bt_client.py pair               pair with hci0 (prints PAIRED or REFUSED <error>)
#   bt_client.py connect            Network1.Connect("nap") (prints IFACE <name> or FAILED)
#   bt_client.py disconnect         Device1.Disconnect() (prints DISCONNECTED or FAILED)
import os, sys, time, dbus

bus = dbus.SystemBus()
A1 = "org.bluez.Adapter1"


def obj(p):
    return bus.get_object("org.bluez", p)


def props(p):
    return dbus.Interface(obj(p), "org.freedesktop.DBus.Properties")


def managed():
    return dbus.Interface(obj("/"), "org.freedesktop.DBus.ObjectManager").GetManagedObjects()


srv, cli = "/org/bluez/hci0", "/org/bluez/" + os.environ.get("BT_CLIENT", "hci1")
props(cli).Set(A1, "Powered", dbus.Boolean(True))
srv_addr = str(props(srv).Get(A1, "Address"))
dev = cli + "/dev_" + srv_addr.replace(":", "_")
cmd = sys.argv[1]
if cmd == "discover":
    ad = dbus.Interface(obj(cli), A1)
    try:
        ad.SetDiscoveryFilter({"Transport": "bredr"})
    except dbus.DBusException:
        pass
    ad.StartDiscovery()
    end = time.monotonic() + float(sys.argv[2])
    found = False
    while time.monotonic() < end:
        if dev in managed():
            found = True
            break
        time.sleep(0.25)
    try:
        ad.StopDiscovery()
    except dbus.DBusException:
        pass
    print("FOUND" if found else "NOT_FOUND", flush=True)
elif cmd == "pair":
    try:
        dbus.Interface(obj(dev), "org.bluez.Device1").Pair(timeout=20)
        print("PAIRED", flush=True)
    except dbus.DBusException as e:
        print("REFUSED", e.get_dbus_name(), flush=True)
elif cmd == "disconnect":
    try:
        dbus.Interface(obj(dev), "org.bluez.Device1").Disconnect()
        print("DISCONNECTED", flush=True)
    except dbus.DBusException as e:
        print("FAILED", e.get_dbus_name(), flush=True)
elif cmd == "connect":
    try:
        iface = dbus.Interface(obj(dev), "org.bluez.Network1").Connect("nap", timeout=60)
        print("IFACE", iface, flush=True)
    except dbus.DBusException as e:
        print("FAILED", e.get_dbus_name(), e.get_dbus_message(), flush=True)
