#include "ui/app/help_overlay.h"

#include <QAction>
#include <QKeyEvent>
#include <QLabel>
#include <QPainter>
#include <QVBoxLayout>

namespace kto::ui {

HelpOverlay::HelpOverlay(QWidget* parent) : QWidget(parent) {
    setObjectName("helpOverlay");
    setFocusPolicy(Qt::StrongFocus);
    label_ = new QLabel(this);
    label_->setObjectName("helpText");
    label_->setTextFormat(Qt::RichText);
    label_->setAlignment(Qt::AlignCenter);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(label_);
    parent->installEventFilter(this);  // follow the window's size
    hide();
}

void HelpOverlay::setSections(const QList<Section>& sections) {
    sections_ = sections;
    rebuild();
}

void HelpOverlay::rebuild() {
    QString html = "<h2>" + tr("Keyboard shortcuts") + "</h2><table align='center' cellspacing='6'>";
    for (const Section& s : sections_) {
        html += "<tr><td colspan='2'><b>" + s.first.toHtmlEscaped() + "</b></td></tr>";
        for (QAction* a : s.second) {
            QStringList keys;
            for (const QKeySequence& k : a->shortcuts()) keys << k.toString(QKeySequence::NativeText);
            if (keys.isEmpty()) continue;
            html += "<tr><td align='right'><tt>" + keys.join(", ").toHtmlEscaped() + "</tt></td><td>" +
                    a->text().remove('&').toHtmlEscaped() + "</td></tr>";
        }
    }
    html += "</table><p>" + tr("Press F1, ? or Esc to close") + "</p>";
    label_->setText(html);
}

QString HelpOverlay::text() const {
    QStringList lines;
    for (const Section& s : sections_) {
        lines << s.first;
        for (QAction* a : s.second) {
            QStringList keys;
            for (const QKeySequence& k : a->shortcuts()) keys << k.toString();
            lines << keys.join(", ") + "\t" + a->text().remove('&');
        }
    }
    return lines.join('\n');
}

void HelpOverlay::toggle() {
    if (isVisible()) {
        hide();
        return;
    }
    rebuild();  // shortcuts may have changed since the last time
    setGeometry(parentWidget()->rect());
    raise();
    show();
    setFocus();
}

void HelpOverlay::paintEvent(QPaintEvent*) {
    QPainter p(this);
    QColor bg = palette().color(QPalette::Window);  // the system palette, light or dark
    bg.setAlpha(240);
    p.fillRect(rect(), bg);
}

void HelpOverlay::keyPressEvent(QKeyEvent* event) {
    if (event->key() == Qt::Key_Escape || event->key() == Qt::Key_F1 || event->key() == Qt::Key_Question) {
        hide();
        return;
    }
    QWidget::keyPressEvent(event);
}

void HelpOverlay::mousePressEvent(QMouseEvent*) { hide(); }

bool HelpOverlay::eventFilter(QObject* watched, QEvent* event) {
    if (watched == parentWidget() && event->type() == QEvent::Resize && isVisible())
        setGeometry(parentWidget()->rect());
    return QWidget::eventFilter(watched, event);
}

}  // namespace kto::ui
