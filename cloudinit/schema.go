package cloudinit

import (
	"reflect"
	"strings"
)

// splitKey turns a dotted key ("rancher.network.interfaces.eth1.100.mtu")
// into the document's keys, guided by the Config type: a map of values
// takes the rest as one key ("rancher.sysctl.net.ipv4.ip_forward"), and a
// map of structs takes the shortest key after which the rest names a field
// ("eth1.100" then "mtu"). It also returns the Go type at the key, or nil
// when the key is not one Berth knows (the keys are then split at every dot).
func splitKey(key string) (keyPath, reflect.Type) {
	segs := strings.Split(key, ".")
	p, t := resolve(reflect.TypeOf(Config{}), segs)
	if p == nil {
		return keyPath(segs), nil
	}
	return p, t
}

func resolve(t reflect.Type, segs []string) (keyPath, reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if len(segs) == 0 {
		return keyPath{}, t
	}
	switch {
	case t == commandType || t == mountType:
		return nil, nil
	case t.Kind() == reflect.Struct:
		i, ok := fieldIndex(t, segs[0])
		if !ok {
			return nil, nil
		}
		rest, rt := resolve(t.Field(i).Type, segs[1:])
		if rest == nil {
			return nil, nil
		}
		return append(keyPath{segs[0]}, rest...), rt
	case t.Kind() == reflect.Slice && isIndexSeg(segs[0]):
		if _, ok := indexOf(segs[0]); !ok {
			return nil, nil
		}
		rest, rt := resolve(t.Elem(), segs[1:])
		if rest == nil {
			return nil, nil
		}
		return append(keyPath{segs[0]}, rest...), rt
	case t.Kind() == reflect.Map:
		et := t.Elem()
		for et.Kind() == reflect.Pointer {
			et = et.Elem()
		}
		if et.Kind() != reflect.Struct {
			return keyPath{strings.Join(segs, ".")}, t.Elem()
		}
		for n := 1; n <= len(segs); n++ {
			if rest, rt := resolve(et, segs[n:]); rest != nil {
				return append(keyPath{strings.Join(segs[:n], ".")}, rest...), rt
			}
		}
	}
	return nil, nil
}
