package client

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/qrtalk/qrtalk/protocol"
)

// ErrNoGroup: no group has that name or ID.
var ErrNoGroup = errors.New("no such group")

// A Group is known only to its members: its state (name, members, a
// version that grows with each change) travels as signed, encrypted
// messages among them. The server sees only who receives what.
type Group struct {
	ID      []byte
	Name    string
	Members []protocol.UserID // this user included
	Version int
}

// groupState is the body of a ContentGroup message.
type groupState struct {
	Name    string            `json:"name"`
	Members []protocol.UserID `json:"members"`
	Version int               `json:"version"`
}

// CreateGroup makes a group of this user and the given contacts and tells
// them.
func (a *Account) CreateGroup(ctx context.Context, name string, members []string) (*Group, error) {
	name = sanitizeName(name)
	if name == "" {
		return nil, errors.New("a group needs a name")
	}
	g := &Group{ID: make([]byte, protocol.GroupIDSize), Name: name, Members: []protocol.UserID{a.dev.User}, Version: 1}
	rand.Read(g.ID)
	for _, m := range members {
		c, err := a.Contact(ctx, m)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(g.Members, c.User) {
			g.Members = append(g.Members, c.User)
		}
	}
	if err := a.saveGroup(ctx, g); err != nil {
		return nil, err
	}
	return g, a.announceGroup(ctx, g, nil)
}

// AddMember adds a contact to a group and tells every member.
func (a *Account) AddMember(ctx context.Context, group, who string) (*Group, error) {
	return a.changeGroup(ctx, group, who, true)
}

// RemoveMember removes a member and tells every member, the removed one
// included (so that their client stops showing the group as theirs).
func (a *Account) RemoveMember(ctx context.Context, group, who string) (*Group, error) {
	return a.changeGroup(ctx, group, who, false)
}

func (a *Account) changeGroup(ctx context.Context, group, who string, add bool) (*Group, error) {
	g, err := a.Group(ctx, group)
	if err != nil {
		return nil, err
	}
	c, err := a.Contact(ctx, who)
	if err != nil {
		return nil, err
	}
	var removed []*Contact
	if add {
		if slices.Contains(g.Members, c.User) {
			return g, nil
		}
		g.Members = append(g.Members, c.User)
	} else {
		i := slices.Index(g.Members, c.User)
		if i < 0 {
			return nil, fmt.Errorf("%s is not in %s", c.Name, g.Name)
		}
		g.Members = slices.Delete(g.Members, i, i+1)
		removed = append(removed, c)
	}
	g.Version++
	if err := a.saveGroup(ctx, g); err != nil {
		return nil, err
	}
	return g, a.announceGroup(ctx, g, removed)
}

func (a *Account) announceGroup(ctx context.Context, g *Group, alsoTo []*Contact) error {
	conv, err := a.resolve(ctx, hex.EncodeToString(g.ID))
	if err != nil {
		return err
	}
	conv.members = append(conv.members, alsoTo...)
	if len(conv.members) == 0 {
		return nil
	}
	body := marshalJSON(groupState{Name: g.Name, Members: g.Members, Version: g.Version})
	_, err = a.sendTo(ctx, conv, &protocol.Message{ContentType: ContentGroup, GroupID: g.ID, Body: body}, SendOptions{TTL: protocol.MaxTTL})
	return err
}

// applyGroup takes a group state from a member. A newer version from a
// current member replaces ours; an unknown group is joined.
func (a *Account) applyGroup(ctx context.Context, from protocol.UserID, groupID, body []byte) error {
	var st groupState
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("group state: %w", err)
	}
	old, err := a.Group(ctx, hex.EncodeToString(groupID))
	switch {
	case errors.Is(err, ErrNoGroup):
		if !slices.Contains(st.Members, from) || !slices.Contains(st.Members, a.dev.User) {
			return nil
		}
		g := &Group{ID: groupID, Name: a.uniqueGroupName(ctx, sanitizeName(st.Name)), Members: st.Members, Version: st.Version}
		return a.saveGroup(ctx, g)
	case err != nil:
		return err
	}
	if !slices.Contains(old.Members, from) || st.Version <= old.Version {
		return nil
	}
	old.Members, old.Version = st.Members, st.Version
	return a.saveGroup(ctx, old)
}

func (a *Account) uniqueGroupName(ctx context.Context, name string) string {
	if name == "" {
		name = "group"
	}
	for i := 1; ; i++ {
		n := name
		if i > 1 {
			n = fmt.Sprintf("%s-%d", name, i)
		}
		if _, err := a.Group(ctx, n); errors.Is(err, ErrNoGroup) {
			return n
		}
	}
}

func (a *Account) saveGroup(ctx context.Context, g *Group) error {
	members := make([]string, len(g.Members))
	for i, m := range g.Members {
		members[i] = m.String()
	}
	_, err := a.db.ExecContext(ctx, `INSERT INTO groups (id, name, members, version) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET members = excluded.members, version = excluded.version`,
		g.ID, g.Name, strings.Join(members, ","), g.Version)
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return fmt.Errorf("a group named %q exists already", g.Name)
	}
	return err
}

// Group finds a group by name or ID (hex).
func (a *Account) Group(ctx context.Context, who string) (*Group, error) {
	id, _ := hex.DecodeString(strings.TrimSpace(who))
	row := a.db.QueryRowContext(ctx, `SELECT id, name, members, version FROM groups WHERE name = ? OR id = ?`, sanitizeName(who), id)
	g, err := scanGroup(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", ErrNoGroup, who)
	}
	return g, err
}

// Groups lists the groups by name.
func (a *Account) Groups(ctx context.Context) ([]*Group, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT id, name, members, version FROM groups ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Group
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

func scanGroup(row scanner) (*Group, error) {
	var g Group
	var members string
	if err := row.Scan(&g.ID, &g.Name, &members, &g.Version); err != nil {
		return nil, err
	}
	for _, m := range strings.Split(members, ",") {
		u, err := protocol.ParseUserID(m)
		if err != nil {
			return nil, err
		}
		g.Members = append(g.Members, u)
	}
	return &g, nil
}
