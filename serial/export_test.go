package serial

import "sort"

// CachedNames returns the keys of r's name cache, sorted, for tests that
// check what it holds.
func CachedNames(r *Registry) []string {
	var names []string
	r.byName.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	sort.Strings(names)
	return names
}
